package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// TestMain doubles as a stand-in process for the tests of the runner's own
// process handling (kill after Grace), which real restic cannot provoke: it
// is started as "restic" with RUNNER_TEST_HELPER in Repo.Env.
func TestMain(m *testing.M) {
	switch os.Getenv("RUNNER_TEST_HELPER") {
	case "":
		os.Exit(m.Run())
	case "ignore-sigint":
		signal.Ignore(os.Interrupt)
		fmt.Println(`{"message_type":"status","percent_done":0.5}`)
		time.Sleep(time.Minute)
		os.Exit(0)
	default:
		os.Exit(99)
	}
}

// syncBuffer is a bytes.Buffer safe for concurrent writes (log output).
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// newRunner returns a Runner with a private temp dir and cache, whose log
// is printed when the test fails.
func newRunner(t *testing.T) (*Runner, *syncBuffer) {
	t.Helper()
	logs := &syncBuffer{}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("runner log:\n%s", logs.String())
		}
	})
	return &Runner{
		Restic:   testenv.Restic(t),
		TempDir:  filepath.Join(t.TempDir(), "secrets"),
		CacheDir: filepath.Join(t.TempDir(), "cache"),
		Grace:    20 * time.Second,
		Logger:   slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}, logs
}

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Second)
	t.Cleanup(cancel)
	return ctx
}

// initRepo creates a local repository through the runner.
func initRepo(t *testing.T, r *Runner) Repo {
	t.Helper()
	repo := Repo{URL: filepath.Join(t.TempDir(), "repo"), Password: "correct horse battery staple"}
	res := r.Run(testCtx(t), Spec{Kind: KindInit, Repo: repo}, Hooks{})
	if res.Status != StatusSucceeded {
		t.Fatalf("init: %+v", res)
	}
	return repo
}

// genTree writes small text files and big random ones under dir.
func genTree(t *testing.T, dir string, small, big, bigSize int) {
	t.Helper()
	src := rand.NewChaCha8([32]byte{byte(small), byte(big), byte(bigSize >> 20)})
	rng := rand.New(src)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for i := 0; i < small; i++ {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%10))
		if err := os.MkdirAll(sub, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d.txt", i)), fmt.Appendf(nil, "file %d %d\n", i, rng.Uint64()), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	buf := make([]byte, bigSize)
	for i := 0; i < big; i++ {
		_, _ = src.Read(buf)
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("big%d.bin", i)), buf, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

// resticDirect runs the restic binary itself (not through the runner).
func resticDirect(t *testing.T, repo Repo, args ...string) []byte {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(repo.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Restic(t), append([]string{"-r", repo.URL, "--password-file", pw, "--no-cache"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// leftovers lists what is left in the runner's temp dir.
func leftovers(t *testing.T, dir string) []string {
	t.Helper()
	entries, err := os.ReadDir(dir)
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// procEntries reads restic's /proc cmdline and environ from OnProcess.
// exec.Cmd.Start returns once the exec has closed the close-on-exec pipe,
// but the kernel sets up the new program's argument and environment pages
// a moment later: read at once under load (two busy cores, CI) both came
// back empty, with no error, in about one run in ten. So it reads again
// until cmdline is there, or the process has exited (a zombie has none).
func procEntries(t *testing.T, pid int) (cmdline, environ []byte) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(5 * time.Millisecond) {
		cmdline, _ = os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
		environ, _ = os.ReadFile(fmt.Sprintf("/proc/%d/environ", pid))
		if len(cmdline) > 0 || time.Now().After(deadline) {
			return cmdline, environ
		}
		if st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err != nil || bytes.Contains(st, []byte(") Z ")) {
			return cmdline, environ
		}
	}
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdef", c) {
			return false
		}
	}
	return true
}

func TestInitAndBackup(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	r.ProgressInterval = 100 * time.Millisecond
	ctx := testCtx(t)

	repo := Repo{URL: filepath.Join(t.TempDir(), "repo"), Password: "correct horse battery staple"}
	res := r.Run(ctx, Spec{Kind: KindInit, Repo: repo}, Hooks{})
	if res.Status != StatusSucceeded || res.ExitCode != 0 || res.Error != "" || res.StartedAt.IsZero() || res.EndedAt.Before(res.StartedAt) {
		t.Fatalf("init: %+v", res)
	}
	var initOut struct{ ID, Repository string }
	if err := json.Unmarshal(res.Output, &initOut); err != nil || !isHex64(initOut.ID) || initOut.Repository != repo.URL {
		t.Fatalf("init Output %s: %v", res.Output, err)
	}

	// A second init fails: the repository exists.
	res = r.Run(ctx, Spec{Kind: KindInit, Repo: repo}, Hooks{})
	if res.Status != StatusFailed || res.ExitCode != 1 || !strings.Contains(res.Error, "config file already exists") {
		t.Fatalf("second init: %+v", res)
	}

	data := t.TempDir()
	genTree(t, data, 300, 2, 1<<20)
	// And 32 MiB, so that restic is busy long enough to report progress:
	// it sends status lines on a ticker only.
	genTree(t, filepath.Join(data, "large"), 0, 1, 32<<20)
	for i := 0; i < 5; i++ {
		if err := os.WriteFile(filepath.Join(data, fmt.Sprintf("skip%d.tmp", i)), []byte("x"), 0o644); err != nil {
			t.Fatal(err)
		}
	}

	var (
		startedAt  time.Time
		progress   []Progress
		beforeOpen bool
	)
	hooks := Hooks{
		OnStart: func(at time.Time) { startedAt = at },
		OnProgress: func(p Progress) {
			if startedAt.IsZero() {
				beforeOpen = true
			}
			progress = append(progress, p)
		},
	}
	spec := Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{
		Paths: []string{data}, Excludes: []string{"*.tmp"}, Tags: []string{"daily", "manual"}, Hostname: "test-host",
	}}
	res = r.Run(ctx, spec, hooks)
	if res.Status != StatusSucceeded || res.ExitCode != 0 || res.Error != "" {
		t.Fatalf("backup: %+v", res)
	}
	if !isHex64(res.SnapshotID) {
		t.Fatalf("SnapshotID %q", res.SnapshotID)
	}
	if startedAt.IsZero() || !startedAt.Equal(res.StartedAt) {
		t.Errorf("OnStart got %v, Result.StartedAt %v", startedAt, res.StartedAt)
	}
	if beforeOpen {
		t.Error("OnProgress before OnStart")
	}

	var summary struct {
		SnapshotID          string `json:"snapshot_id"`
		TotalFilesProcessed int    `json:"total_files_processed"`
		MessageType         string `json:"message_type"`
	}
	if err := json.Unmarshal(res.Summary, &summary); err != nil {
		t.Fatal(err)
	}
	if summary.SnapshotID != res.SnapshotID || summary.TotalFilesProcessed != 303 || summary.MessageType != "summary" {
		t.Errorf("summary %s", res.Summary)
	}

	// Throttling: at most one call per interval, plus the first and the
	// last one before the summary.
	elapsed := res.EndedAt.Sub(res.StartedAt)
	if max := int(elapsed/r.ProgressInterval) + 2; len(progress) > max {
		t.Errorf("%d progress calls in %v (interval %v), want at most %d", len(progress), elapsed, r.ProgressInterval, max)
	}
	t.Logf("backup took %v, %d progress calls", elapsed, len(progress))
	if len(progress) == 0 {
		t.Error("no progress")
	}
	for _, p := range progress {
		if p.Percent < 0 || p.Percent > 100 || p.BytesDone > p.TotalBytes || p.TotalFiles == 0 {
			t.Errorf("progress %+v", p)
		}
	}

	var snaps []struct {
		ID       string   `json:"id"`
		Hostname string   `json:"hostname"`
		Tags     []string `json:"tags"`
		Paths    []string `json:"paths"`
	}
	if err := json.Unmarshal(resticDirect(t, repo, "snapshots", "--json"), &snaps); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 1 || snaps[0].ID != res.SnapshotID {
		t.Fatalf("restic snapshots: %+v, want exactly %s", snaps, res.SnapshotID)
	}
	if s := snaps[0]; s.Hostname != "test-host" || strings.Join(s.Tags, ",") != "daily,manual" || len(s.Paths) != 1 || s.Paths[0] != data {
		t.Errorf("snapshot %+v", s)
	}
	if l := leftovers(t, r.TempDir); len(l) != 0 {
		t.Errorf("left in TempDir: %v", l)
	}
}

func TestWrongPassword(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	repo := initRepo(t, r)
	repo.Password = "not the password"
	res := r.Run(testCtx(t), Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{t.TempDir()}}}, Hooks{})
	if res.Status != StatusFailed || res.ExitCode != 12 || !strings.Contains(res.Error, "wrong password") || res.StartedAt.IsZero() {
		t.Fatalf("%+v", res)
	}
	if strings.Contains(res.StderrTail, repo.Password) {
		t.Fatalf("password in tail: %q", res.StderrTail)
	}
}

func TestNoRepository(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	r.TempDir = "" // a private directory per run
	var pwFile string
	hooks := Hooks{OnProcess: func(pid int) {
		if runtime.GOOS != "linux" {
			return
		}
		cmdline, _ := procEntries(t, pid)
		args := strings.Split(string(cmdline), "\x00")
		for i, a := range args {
			if a == "--password-file" && i+1 < len(args) {
				pwFile = args[i+1]
			}
		}
	}}
	repo := Repo{URL: filepath.Join(t.TempDir(), "does-not-exist"), Password: "pw12345"}
	res := r.Run(testCtx(t), Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{t.TempDir()}}}, hooks)
	if res.Status != StatusFailed || res.ExitCode != 10 || !strings.Contains(res.Error, "repository does not exist") {
		t.Fatalf("%+v", res)
	}
	if runtime.GOOS == "linux" {
		if pwFile == "" {
			t.Fatal("no --password-file in restic's command line")
		}
		if _, err := os.Stat(filepath.Dir(pwFile)); !os.IsNotExist(err) {
			t.Fatalf("per-run secret dir %s left behind: %v", filepath.Dir(pwFile), err)
		}
	}
}

// TestPartial gets exit code 3 from an unreadable source file. Tests run as
// root, where file modes do not stop reading, and restic 0.18 skips a
// missing source path with exit code 0; /proc/self/mem (restic's own memory)
// fails to read at offset 0 with EIO for anyone.
func TestPartial(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs /proc/self/mem")
	}
	t.Parallel()
	r, _ := newRunner(t)
	repo := initRepo(t, r)
	data := t.TempDir()
	genTree(t, data, 10, 0, 0)
	res := r.Run(testCtx(t), Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{data, "/proc/self/mem"}}}, Hooks{})
	if res.Status != StatusPartial || res.ExitCode != 3 || !isHex64(res.SnapshotID) {
		t.Fatalf("%+v", res)
	}
	if want := "at least one source file could not be read: failed to save /proc/self/mem"; !strings.HasPrefix(res.Error, want) {
		t.Errorf("Error %q, want it to start with %q", res.Error, want)
	}
	if !strings.Contains(res.StderrTail, `"exit_error"`) {
		t.Errorf("tail %q", res.StderrTail)
	}
}

func TestOptionInjectionRefused(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	repo := Repo{URL: filepath.Join(t.TempDir(), "repo"), Password: "pw12345"}
	for _, b := range []BackupArgs{
		{Paths: []string{"--help"}},
		{Paths: []string{t.TempDir(), "-r"}},
		{Paths: []string{t.TempDir()}, Excludes: []string{"--password-command=touch /tmp/pwned"}},
		{Paths: []string{t.TempDir()}, Tags: []string{"-h"}},
		{Paths: []string{t.TempDir()}, Hostname: "--no-lock"},
		{Paths: []string{"/a\x00b"}},
		{},
	} {
		started := false
		res := r.Run(testCtx(t), Spec{Kind: KindBackup, Repo: repo, Backup: b}, Hooks{OnProcess: func(int) { started = true }})
		if started || res.Status != StatusFailed || res.ExitCode != -1 || res.Error == "" {
			t.Errorf("%+v: started %v, %+v", b, started, res)
		}
		t.Logf("%+v: %s", b, res.Error)
	}
	if l := leftovers(t, r.TempDir); len(l) != 0 {
		t.Errorf("left in TempDir: %v", l)
	}
}

// startRestServer runs rest-server without authentication (any credentials
// in the URL are accepted) and returns its address.
func startRestServer(t *testing.T) string {
	t.Helper()
	addr := testenv.FreePort(t)
	cmd := exec.Command(testenv.RestServer(t), "--no-auth", "--path", t.TempDir(), "--listen", addr)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// TestSecretsNotExposed checks restic's command line and environment while
// it runs, the secret files, and everything the runner hands back or logs.
// Not parallel: it sets the agent's environment.
func TestSecretsNotExposed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	const (
		password = "pw-Secret-0xC0FFEE"
		urlPass  = "url-Secret-0xBEEF"
		envLeak  = "agent-env-secret-42"
	)
	// The agent's own environment must not reach restic.
	t.Setenv("RESTIC_PASSWORD", envLeak)
	t.Setenv("RESTIC_REPOSITORY", "/agent/env/"+envLeak)
	t.Setenv("AWS_SECRET_ACCESS_KEY", envLeak)

	addr := startRestServer(t)
	url := "rest:http://agent:" + urlPass + "@" + addr + "/repo/"
	repo := Repo{URL: url, Password: password}
	r, logs := newRunner(t)
	data := t.TempDir()
	genTree(t, data, 20, 1, 1<<20)

	secrets := []string{password, urlPass, url, envLeak}
	checkProcess := func(pid int) {
		cmdline, environ := procEntries(t, pid)
		if len(cmdline) == 0 {
			t.Error("restic's cmdline was not read")
		}
		if len(environ) == 0 || !bytes.Contains(environ, []byte("PATH=")) {
			t.Errorf("environ %q", environ)
		}
		for _, s := range secrets {
			if bytes.Contains(cmdline, []byte(s)) || bytes.Contains(environ, []byte(s)) {
				t.Errorf("%q in restic's command line or environment", s)
			}
		}
		for _, v := range strings.Split(string(environ), "\x00") {
			if strings.HasPrefix(v, "RESTIC_PASSWORD") || strings.HasPrefix(v, "RESTIC_REPOSITORY") || strings.HasPrefix(v, "AWS_") {
				t.Errorf("restic's environment has %s", v)
			}
		}
		// The secret files: private, and they hold the secrets.
		fi, err := os.Stat(r.TempDir)
		if err != nil || fi.Mode().Perm() != 0o700 {
			t.Errorf("TempDir: %v, %v", fi.Mode(), err)
		}
		var contents []string
		for _, name := range leftovers(t, r.TempDir) {
			p := filepath.Join(r.TempDir, name)
			fi, err := os.Stat(p)
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: %v, %v", name, fi.Mode(), err)
			}
			b, _ := os.ReadFile(p)
			contents = append(contents, string(b))
		}
		if got := strings.Join(contents, "|"); len(contents) != 2 || !strings.Contains(got, password) || !strings.Contains(got, url) {
			t.Errorf("secret files hold %q", got)
		}
	}

	for _, spec := range []Spec{
		{Kind: KindInit, Repo: repo},
		{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{data}}},
	} {
		checked := false
		res := r.Run(testCtx(t), spec, Hooks{OnProcess: func(pid int) { checkProcess(pid); checked = true }})
		if res.Status != StatusSucceeded || !checked {
			t.Fatalf("%s: %+v", spec.Kind, res)
		}
		if l := leftovers(t, r.TempDir); len(l) != 0 {
			t.Errorf("%s: left in TempDir: %v", spec.Kind, l)
		}
		b, _ := json.Marshal(res)
		for _, s := range secrets {
			if bytes.Contains(b, []byte(s)) {
				t.Errorf("%s: %q in the result: %s", spec.Kind, s, b)
			}
		}
		t.Logf("%s: Output %s", spec.Kind, res.Output)
	}
	log := logs.String()
	for _, s := range secrets {
		if strings.Contains(log, s) {
			t.Errorf("%q in the log:\n%s", s, log)
		}
	}
	if !strings.Contains(log, "rest:http://"+addr+"/repo/") {
		t.Errorf("log lacks the redacted URL:\n%s", log)
	}
}

// TestCancel cancels a backup once it reports progress: restic gets SIGINT,
// exits on its own, and leaves no lock behind.
func TestCancel(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	repo := initRepo(t, r)
	data := t.TempDir()
	genTree(t, data, 10, 6, 64<<20) // 384 MiB: several seconds of backup

	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var cancelledAt time.Time
	hooks := Hooks{OnProgress: func(p Progress) {
		if cancelledAt.IsZero() {
			cancelledAt = time.Now()
			t.Logf("cancelling at %.1f%%", p.Percent)
			cancel()
		}
	}}
	res := r.Run(ctx, Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{data}}}, hooks)
	if cancelledAt.IsZero() {
		t.Fatalf("no progress: %+v", res)
	}
	t.Logf("restic exited %v after SIGINT with code %d; tail:\n%s", res.EndedAt.Sub(cancelledAt), res.ExitCode, res.StderrTail)
	if res.Status != StatusCancelled || res.Error != "cancelled" || res.SnapshotID != "" {
		t.Fatalf("%+v", res)
	}
	// restic exited by itself (1 in 0.17–0.18, 130 before and from 0.19),
	// it was not killed after Grace.
	if res.ExitCode <= 0 || res.ExitCode >= 128 && res.ExitCode != 130 {
		t.Errorf("exit code %d", res.ExitCode)
	}
	if locks := strings.TrimSpace(string(resticDirect(t, repo, "list", "locks", "--no-lock"))); locks != "" {
		t.Errorf("locks left after cancel: %q", locks)
	}
	if l := leftovers(t, r.TempDir); len(l) != 0 {
		t.Errorf("left in TempDir: %v", l)
	}
}

func TestTimeout(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	repo := initRepo(t, r)
	// 300 ms: restic is still deriving the key when SIGINT comes.
	res := r.Run(testCtx(t), Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{t.TempDir()}}, Timeout: 300 * time.Millisecond}, Hooks{})
	if res.Status != StatusFailed || res.Error != "timed out after 300ms" || res.ExitCode == -1 || res.StartedAt.IsZero() {
		t.Fatalf("%+v", res)
	}
	if d := res.EndedAt.Sub(res.StartedAt); d > 10*time.Second {
		t.Errorf("run took %v", d)
	}
	if locks := strings.TrimSpace(string(resticDirect(t, repo, "list", "locks", "--no-lock"))); locks != "" {
		t.Errorf("locks left after timeout: %q", locks)
	}
}

// TestRunWaitsForRepoLock: a run waits for the repository's lock, reports
// Waited, starts restic only once it holds it, and gives up with ctx.
func TestRunWaitsForRepoLock(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	r.Locks = &RepoLocks{}
	repo := Repo{URL: filepath.Join(t.TempDir(), "missing"), Password: "pw12345"} // restic exits 10 at once
	spec := Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{t.TempDir()}}}
	ctx := testCtx(t)

	unlock, _, err := r.Locks.Lock(ctx, repoKey(repo.URL))
	if err != nil {
		t.Fatal(err)
	}
	var startedAt time.Time
	done := make(chan Result)
	go func() { done <- r.Run(ctx, spec, Hooks{OnStart: func(at time.Time) { startedAt = at }}) }()
	time.Sleep(200 * time.Millisecond)
	releasedAt := time.Now()
	unlock()
	res := <-done
	if !res.Waited || res.ExitCode != 10 || startedAt.Before(releasedAt) {
		t.Fatalf("waited %v, code %d, started %v before release %v", res.Waited, res.ExitCode, startedAt, releasedAt)
	}
	if n := r.Locks.size(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}

	// Cancelled, then timed out, while waiting.
	unlock, _, _ = r.Locks.Lock(ctx, repoKey(repo.URL))
	cctx, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	onStart := Hooks{OnStart: func(time.Time) { t.Error("restic started") }}
	res = r.Run(cctx, spec, onStart)
	if res.Status != StatusCancelled || !res.Waited || res.ExitCode != -1 || res.Error != "cancelled while waiting for the repository lock" {
		t.Fatalf("cancelled wait: %+v", res)
	}
	spec.Timeout = 100 * time.Millisecond
	res = r.Run(ctx, spec, onStart)
	if res.Status != StatusFailed || res.Error != "timed out after 100ms while waiting for the repository lock" || res.ExitCode != -1 {
		t.Fatalf("timed-out wait: %+v", res)
	}
	unlock()
	if n := r.Locks.size(); n != 0 {
		t.Fatalf("%d lock entries left", n)
	}
}

func TestVersion(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	v, err := r.Version(testCtx(t))
	if err != nil || v != "0.18.1" {
		t.Fatalf("Version = %q, %v", v, err)
	}
	r.Restic = filepath.Join(t.TempDir(), "no-restic")
	if _, err := r.Version(testCtx(t)); err == nil {
		t.Fatal("no error for a missing binary")
	}
}
