//go:build unix

package runner

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

func TestDumpRestic018(t *testing.T) {
	t.Parallel()
	testDump(t, versionedRunner(t, testenv.Restic(t), "0.18.1"))
}

func TestDumpRestic014(t *testing.T) {
	t.Parallel()
	testDump(t, versionedRunner(t, testenv.Restic014(t), "0.14.0"))
}

// testDump downloads a file and a folder of a snapshot as a browser would
// get them, and stops restic the two ways a closed tab does: the writer
// fails, or the run is cancelled while restic waits for the writer.
func testDump(t *testing.T, r *Runner) {
	repo := initRepo(t, r)
	data := filepath.Join(t.TempDir(), "data")
	genTree(t, data, 30, 1, 8<<20)
	snap := runOK(t, r, Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{data}}}).SnapshotID

	dump := func(ctx context.Context, p string, tarred bool, to io.Writer, h Hooks) (Result, DumpOutput) {
		t.Helper()
		res := r.Run(ctx, Spec{Kind: KindDump, Repo: repo, Dump: DumpArgs{SnapshotID: snap, Path: p, Tar: tarred, To: to}}, h)
		var out DumpOutput
		if res.Output != nil {
			if err := json.Unmarshal(res.Output, &out); err != nil {
				t.Fatal(err)
			}
		}
		return res, out
	}

	// A file: its bytes as they are.
	var buf bytes.Buffer
	res, out := dump(testCtx(t), filepath.Join(data, "big0.bin"), false, &buf, Hooks{})
	want, _ := os.ReadFile(filepath.Join(data, "big0.bin"))
	if res.Status != StatusSucceeded || !bytes.Equal(buf.Bytes(), want) || out.Bytes != uint64(len(want)) {
		t.Fatalf("file: %s %q, %d bytes (output %d), want %d", res.Status, res.Error, buf.Len(), out.Bytes, len(want))
	}

	// A folder: a tar whose files are the source's.
	buf.Reset()
	res, out = dump(testCtx(t), filepath.Join(data, "d03"), true, &buf, Hooks{})
	if res.Status != StatusSucceeded || out.Bytes != uint64(buf.Len()) {
		t.Fatalf("folder: %s %q", res.Status, res.Error)
	}
	files := 0
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		got, _ := io.ReadAll(tr)
		src, err := os.ReadFile("/" + h.Name)
		if err != nil || !bytes.Equal(got, src) {
			t.Errorf("%s: %d bytes differ from the source's (%v)", h.Name, len(got), err)
		}
		files++
	}
	if files != 3 { // f0003, f0013, f0023
		t.Errorf("tar holds %d files, want 3", files)
	}

	// Nothing there: failed, with restic's reason.
	res, _ = dump(testCtx(t), "/no/such/file", false, io.Discard, Hooks{})
	if res.Status != StatusFailed || !strings.Contains(res.Error, "not found") {
		t.Errorf("missing path: %s %q", res.Status, res.Error)
	}
	// Option injection never reaches restic.
	res, _ = dump(testCtx(t), "--help", false, io.Discard, Hooks{})
	if res.Status != StatusFailed || res.ExitCode != -1 {
		t.Errorf("option as path: %+v", res)
	}

	// The writer fails after 1 MiB (the browser went away): restic ends
	// at once, having written little more than that.
	var pid int
	start := time.Now()
	res, out = dump(testCtx(t), filepath.Join(data, "big0.bin"), false, &failingWriter{left: 1 << 20}, Hooks{OnProcess: func(p int) { pid = p }})
	if res.Status != StatusFailed || !strings.Contains(res.Error, "browser went away") || time.Since(start) > 10*time.Second || out.Bytes > 1<<20 {
		t.Errorf("failing writer: %s %q after %v, %d bytes", res.Status, res.Error, time.Since(start), out.Bytes)
	}
	if processAlive(pid) {
		t.Errorf("restic (pid %d) still runs after its reader failed", pid)
	}
	noLocks(t, repo)

	// The writer blocks (a stalled browser) and the job is cancelled:
	// restic is gone within seconds (restic 0.18 stays blocked in its
	// write after SIGINT: the runner closes the pipe under it).
	ctx, cancel := context.WithCancel(testCtx(t))
	bw := &blockingWriter{ctx: ctx, started: make(chan struct{})}
	done := make(chan Result, 1)
	go func() {
		res, _ := dump(ctx, filepath.Join(data, "big0.bin"), false, bw, Hooks{OnProcess: func(p int) { pid = p }})
		done <- res
	}()
	select {
	case <-bw.started:
	case <-time.After(30 * time.Second):
		t.Fatal("restic wrote nothing")
	}
	start = time.Now()
	cancel()
	select {
	case res = <-done:
	case <-time.After(15 * time.Second):
		t.Fatal("the cancelled dump did not end")
	}
	if res.Status != StatusCancelled || processAlive(pid) {
		t.Errorf("cancelled: %s %q, restic alive %v", res.Status, res.Error, processAlive(pid))
	}
	t.Logf("cancelled dump ended %v after the cancel", time.Since(start).Round(time.Millisecond))
	noLocks(t, repo)
}

// noLocks fails when restic left a lock in repo: a stopped download must
// not leave one (it would hold off the next prune until an unlock).
func noLocks(t *testing.T, repo Repo) {
	t.Helper()
	if out := strings.TrimSpace(string(resticDirect(t, repo, "list", "locks"))); out != "" {
		t.Errorf("locks left behind: %s", out)
	}
}

// failingWriter takes left bytes, then fails.
type failingWriter struct{ left int }

func (w *failingWriter) Write(p []byte) (int, error) {
	if len(p) > w.left {
		n := w.left
		w.left = 0
		return n, errors.New("the browser went away")
	}
	w.left -= len(p)
	return len(p), nil
}

// blockingWriter blocks its first write until ctx ends (a stalled
// browser whose request shares the run's context).
type blockingWriter struct {
	ctx     context.Context
	started chan struct{}
	once    bool
}

func (w *blockingWriter) Write(p []byte) (int, error) {
	if !w.once {
		w.once = true
		close(w.started)
	}
	<-w.ctx.Done()
	return 0, w.ctx.Err()
}

// processAlive reports whether pid is still a live process (a zombie
// counts as gone: exec.Cmd reaps it in Wait).
func processAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}
