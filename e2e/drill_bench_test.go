package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// BenchmarkDrill is the cost of a default drill (100 files, 256 MiB) of
// the overhead benchmark's data set (100,000 files, 1 GiB): wall time,
// bytes rest-server read from the repository, the agent's peak RSS; and
// the restore rate it measured against one full `restic restore` of the
// same snapshot (the RTO estimate's error).
//
//	RM_BENCH_NORACE=1 go test ./e2e -run '^$' -bench BenchmarkDrill -benchtime 1x -timeout 40m
func BenchmarkDrill(b *testing.B) {
	files, mib := 100_000, 1024
	if v, _ := strconv.Atoi(os.Getenv("RM_BENCH_OVERHEAD_FILES")); v > 0 {
		files = v
	}
	if v, _ := strconv.Atoi(os.Getenv("RM_BENCH_OVERHEAD_MIB")); v > 0 {
		mib = v
	}
	tb := testing.TB(b)
	ds := genDataSet(tb, filepath.Join(tb.TempDir(), "data"), files, int64(mib)<<20)
	b.Logf("data set: %d files, %.2f GiB", ds.files, float64(ds.bytes)/(1<<30))
	f := newFleetOn(tb, newServer(tb, "--health-delay", "1000h"), testenv.Restic(tb))
	f.agent.start(tb)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(tb)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{ds.dir}}})
	if j := f.srv.waitJob(id, 30*time.Minute); j.Status != wire.StatusSucceeded {
		b.Fatalf("backup: %s: %s", j.Status, j.Error)
	}
	rsPid := restServerPid(b)

	var peak atomic.Int64
	stop, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		for {
			if kb := rssKiB(f.agent.Proc.Pid()); kb > peak.Load() {
				peak.Store(kb)
			}
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
		}
	}()
	read0 := procRchar(rsPid)
	load0 := benchout.LoadAvg()
	b.ResetTimer()
	t0 := time.Now()
	id = f.srv.createJob(f.host.ID, map[string]any{"kind": "drill", "repo_id": f.repoID})
	j := waitJobFast(tb, f.srv, id, 30*time.Minute)
	wall := time.Since(t0)
	b.StopTimer()
	close(stop)
	<-done
	read := procRchar(rsPid) - read0
	var out wire.DrillOutput
	_ = json.Unmarshal(j.Output, &out)
	if j.Status != wire.StatusSucceeded {
		b.Fatalf("drill: %s: %s", j.Status, j.Error)
	}

	// One full restore by hand, for the rate the estimate should have.
	pw := filepath.Join(tb.TempDir(), "pw")
	_ = os.WriteFile(pw, []byte(f.password), 0o600)
	target := tb.TempDir()
	t1 := time.Now()
	cmd := exec.Command(testenv.Restic(tb), "-r", f.repoURL, "--password-file", pw, "--cache-dir", filepath.Join(tb.TempDir(), "cache"),
		"restore", "latest", "--target", target, "--quiet")
	if outb, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("full restore: %v\n%s", err, outb)
	}
	full := time.Since(t1)
	b.Logf("drill: wall %s (job %s), %d files / %.1f MiB checked, %.1f MiB read by rest-server, agent peak RSS %d MiB",
		wall.Round(10*time.Millisecond), j.EndedAt.Sub(j.StartedAt).Round(10*time.Millisecond), out.FilesChecked,
		float64(out.BytesChecked)/(1<<20), float64(read)/(1<<20), peak.Load()/1024)
	b.Logf("drill's rate %.1f MiB/s → full restore estimated at %.1f s; one full restic restore took %.1f s (%.1f MiB/s): estimate off by %+.0f%%",
		out.RestoreBytesPerS/(1<<20), out.EstimatedFullRestoreS, full.Seconds(), float64(ds.bytes)/(1<<20)/full.Seconds(),
		(out.EstimatedFullRestoreS/full.Seconds()-1)*100)
	b.ReportMetric(wall.Seconds(), "drill-s")
	b.ReportMetric(float64(read)/(1<<20), "repo-read-MiB")
	b.ReportMetric(float64(peak.Load())/1024, "agent-peak-RSS-MiB")
	b.ReportMetric(out.EstimatedFullRestoreS/full.Seconds(), "estimate/actual")
	command := benchout.GoTest("./e2e", "BenchmarkDrill", "1x", "RM_BENCH_NORACE", "RM_BENCH_OVERHEAD_FILES", "RM_BENCH_OVERHEAD_MIB")
	fig := func(id, what string, v float64, unit string, r *benchout.Reference) benchout.Figure {
		return benchout.Figure{ID: "drill." + id, Group: benchout.GroupSources, What: what, Value: v, Unit: unit,
			Reference: r, Load: benchout.LoadSince(load0), Command: command}
	}
	if err := benchout.Write("drill", []benchout.Figure{
		fig("wall_s", fmt.Sprintf("default drill of %d files, %.2f GiB: wall", ds.files, float64(ds.bytes)/(1<<30)), wall.Seconds(), "s", nil),
		fig("repo_read_MiB", "drill: bytes rest-server read", float64(read)/(1<<20), "MiB", nil),
		fig("agent_peak_rss_MiB", "drill: agent peak RSS", float64(peak.Load())/1024, "MiB", nil),
		fig("estimate_s", "drill's full-restore estimate", out.EstimatedFullRestoreS, "s",
			&benchout.Reference{What: "one full restic restore", Value: full.Seconds(), Unit: "s"}),
	}); err != nil {
		b.Error(err)
	}
}

// restServerPid finds this test process's rest-server child.
func restServerPid(b *testing.B) int {
	out, err := exec.Command("pgrep", "-P", fmt.Sprint(os.Getpid()), "-f", "rest-server").Output()
	if err != nil {
		b.Fatalf("rest-server not found: %v", err)
	}
	pid, err := strconv.Atoi(strings.Fields(string(out))[0])
	if err != nil {
		b.Fatal(err)
	}
	return pid
}

// procRchar is the bytes a process has read (all read calls: for
// rest-server, the pack files it served).
func procRchar(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "rchar: "); ok {
			n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
			return n
		}
	}
	return 0
}
