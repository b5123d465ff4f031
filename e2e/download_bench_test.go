package e2e

import (
	"bytes"
	"context"
	"crypto/sha256"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// BenchmarkDownload downloads a 1 GiB file of a snapshot (agent → console
// → client, loopback, TLS both hops), then the folder holding it as a
// .tar.gz, and reports the throughput and the console's and the agent's
// peak RSS, sampled every 20 ms. The console must stay under its idle RSS
// + 64 MiB: it keeps no copy and buffers 32 KiB.
//
//	RM_BENCH_NORACE=1 go test ./e2e -run '^$' -bench BenchmarkDownload -benchtime 1x -timeout 30m
//
// RM_BENCH_DOWNLOAD_MIB sets the file's size (default 1024).
func BenchmarkDownload(b *testing.B) {
	mib := 1024
	if v, _ := strconv.Atoi(os.Getenv("RM_BENCH_DOWNLOAD_MIB")); v > 0 {
		mib = v
	}
	tb := testing.TB(b)
	src := filepath.Join(tb.TempDir(), "data")
	if err := os.MkdirAll(src, 0o755); err != nil {
		b.Fatal(err)
	}
	sum := writeRandom(tb, filepath.Join(src, "big.bin"), int64(mib)<<20)
	f := newFleetOn(tb, newServer(tb, "--health-delay", "1000h"), testenv.Restic(tb))
	f.agent.start(tb)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(tb)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	j := f.srv.waitJob(id, 30*time.Minute)
	if j.Status != "succeeded" {
		b.Fatalf("backup: %s: %s", j.Status, j.Error)
	}
	snap := j.SnapshotID
	f.browse(tb, snap, src)

	consolePid, agentPid := f.srv.Proc.Pid(), f.agent.Proc.Pid()
	time.Sleep(2 * time.Second) // let the index's garbage go
	idle := harness.ReadStats(consolePid).RSSMiB
	b.Logf("console idle RSS %.1f MiB", idle)

	for _, c := range []struct{ name, path string }{{"file", src + "/big.bin"}, {"folder", src}} {
		var mu sync.Mutex
		var consolePeak, agentPeak float64
		stop, done := make(chan struct{}), make(chan struct{})
		go func() {
			defer close(done)
			for {
				cs, as := harness.ReadStats(consolePid).RSSMiB, harness.ReadStats(agentPid).RSSMiB
				mu.Lock()
				consolePeak, agentPeak = max(consolePeak, cs), max(agentPeak, as)
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-time.After(20 * time.Millisecond):
				}
			}
		}()
		start := time.Now()
		resp := f.download(tb, context.Background(), snap, c.path)
		h := sha256.New()
		n, err := io.Copy(h, resp.Body)
		resp.Body.Close()
		took := time.Since(start)
		close(stop)
		<-done
		if err != nil {
			b.Fatalf("%s: %v after %d bytes", c.name, err, n)
		}
		if c.name == "file" && (n != int64(mib)<<20 || !bytes.Equal(h.Sum(nil), sum)) {
			b.Fatalf("file: %d bytes, hash differs %v", n, !bytes.Equal(h.Sum(nil), sum))
		}
		rate := float64(int64(mib)<<20) / (1 << 20) / took.Seconds()
		b.Logf("%s: %d MiB in %v = %.0f MiB/s (of the file's bytes; %.0f MiB on the wire); console peak RSS %.1f MiB (idle %.1f), agent peak RSS %.1f MiB",
			c.name, mib, took.Round(time.Millisecond), rate, float64(n)/(1<<20), consolePeak, idle, agentPeak)
		b.ReportMetric(rate, c.name+"_MiB/s")
		b.ReportMetric(consolePeak, c.name+"_console_peak_MiB")
		b.ReportMetric(agentPeak, c.name+"_agent_peak_MiB")
		if consolePeak > idle+64 {
			b.Errorf("%s: console peak RSS %.1f MiB is more than its idle %.1f + 64 MiB", c.name, consolePeak, idle)
		}
	}
}

// writeRandom writes n pseudo-random (incompressible) bytes to p, 1 MiB
// at a time, and returns their SHA-256.
func writeRandom(tb testing.TB, p string, n int64) []byte {
	tb.Helper()
	fh, err := os.Create(p)
	if err != nil {
		tb.Fatal(err)
	}
	defer fh.Close()
	src := rand.NewChaCha8([32]byte{42})
	h := sha256.New()
	buf := make([]byte, 1<<20)
	for left := n; left > 0; left -= int64(len(buf)) {
		chunk := buf[:min(int64(len(buf)), left)]
		_, _ = src.Read(chunk)
		_, _ = h.Write(chunk)
		if _, err := fh.Write(chunk); err != nil {
			tb.Fatal(err)
		}
	}
	return h.Sum(nil)
}
