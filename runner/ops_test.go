package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// resticWith runs restic binary bin itself (not through the runner).
func resticWith(t *testing.T, bin string, repo Repo, args ...string) []byte {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(repo.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, append([]string{"-r", repo.URL, "--password-file", pw, "--no-cache"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir()}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic %v: %v\n%s", args, err, stderr.String())
	}
	return out
}

// runOK runs spec and fails the test unless it succeeds.
func runOK(t *testing.T, r *Runner, spec Spec) Result {
	t.Helper()
	res := r.Run(testCtx(t), spec, Hooks{})
	if res.Status != StatusSucceeded {
		t.Fatalf("%s: %+v", spec.Kind, res)
	}
	return res
}

// runOutput runs spec, which must succeed, and decodes its Output into v.
func runOutput(t *testing.T, r *Runner, spec Spec, v any) Result {
	t.Helper()
	res := runOK(t, r, spec)
	if err := json.Unmarshal(res.Output, v); err != nil {
		t.Fatalf("%s: Output %s: %v", spec.Kind, res.Output, err)
	}
	return res
}

// dirSize is the size of the files below dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.Type().IsRegular() {
			fi, err := d.Info()
			if err != nil {
				return err
			}
			n += fi.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// versionedRunner is a Runner for restic binary bin, whose version must be want.
func versionedRunner(t *testing.T, bin, want string) *Runner {
	t.Helper()
	r, _ := newRunner(t)
	r.Restic = bin
	v, err := r.Version(testCtx(t))
	if err != nil || v != want {
		t.Fatalf("restic version %q, %v; want %s", v, err, want)
	}
	r.ResticVersion = v
	return r
}

func TestOpsRestic018(t *testing.T) {
	t.Parallel()
	testOps(t, versionedRunner(t, testenv.Restic(t), "0.18.1"))
}

func TestOpsRestic014(t *testing.T) {
	t.Parallel()
	testOps(t, versionedRunner(t, testenv.Restic014(t), "0.14.0"))
}

// testOps runs every operation against a small repository and checks its
// output against what restic itself reports, or against the files.
func testOps(t *testing.T, r *Runner) {
	since017 := VersionAtLeast(r.ResticVersion, "0.17.0")
	repo := initRepo(t, r)
	data := filepath.Join(t.TempDir(), "data")
	genTree(t, data, 40, 1, 1<<20)
	unique := make([]byte, 3<<20)
	_, _ = rand.NewChaCha8([32]byte{7}).Read(unique)
	if err := os.WriteFile(filepath.Join(data, "unique.bin"), unique, 0o644); err != nil {
		t.Fatal(err)
	}

	backup := func(host string) {
		t.Helper()
		res := runOK(t, r, Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{data}, Hostname: host, Tags: []string{"t"}}})
		// restic 0.14's summary has the short ID.
		if want := map[bool]int{true: 64, false: 8}[VersionAtLeast(r.ResticVersion, "0.15.0")]; len(res.SnapshotID) != want {
			t.Errorf("backup SnapshotID %q", res.SnapshotID)
		}
	}
	backup("h1")
	// Snapshot 2: unique.bin removed (prune frees it after forget), one
	// file changed, one added.
	if err := os.Remove(filepath.Join(data, "unique.bin")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "d00", "f0000.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(data, "new.txt"), []byte("new file\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	backup("h1")
	backup("h2")

	// snapshots: the same as restic's own list.
	var snaps []Snapshot
	runOutput(t, r, Spec{Kind: KindSnapshots, Repo: repo}, &snaps)
	var direct []struct{ ID, Hostname string }
	if err := json.Unmarshal(resticWith(t, r.Restic, repo, "snapshots", "--json"), &direct); err != nil {
		t.Fatal(err)
	}
	if len(snaps) != 3 || len(direct) != 3 {
		t.Fatalf("%d snapshots, restic lists %d", len(snaps), len(direct))
	}
	for i, s := range snaps {
		if s.ID != direct[i].ID || s.Hostname != direct[i].Hostname || s.ShortID != s.ID[:8] || !slices.Equal(s.Tags, []string{"t"}) || s.Paths[0] != data {
			t.Errorf("snapshot %d: %+v, restic %+v", i, s, direct[i])
		}
	}
	id1, id2, id3 := snaps[0].ID, snaps[1].ID, snaps[2].ID
	var h2 []Snapshot
	runOutput(t, r, Spec{Kind: KindSnapshots, Repo: repo, Snapshots: SnapshotsArgs{Hosts: []string{"h2"}}}, &h2)
	if len(h2) != 1 || h2[0].ID != id3 {
		t.Errorf("host filter: %+v", h2)
	}

	// stats: what `restic stats --json` says.
	for _, mode := range []string{"", "raw-data"} {
		var got, want map[string]any
		runOutput(t, r, Spec{Kind: KindStats, Repo: repo, Stats: StatsArgs{Mode: mode, SnapshotIDs: []string{id1[:8], id2}}}, &got)
		args := []string{"stats", "--json", id1[:8], id2}
		if mode != "" {
			args = append(args, "--mode", mode)
		}
		if err := json.Unmarshal(resticWith(t, r.Restic, repo, args...), &want); err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) || got["snapshots_count"] != 2.0 {
			t.Errorf("stats %q: %v, restic says %v", mode, got, want)
		}
	}

	// diff: the three changes; statistics as restic prints them.
	var d DiffOutput
	runOutput(t, r, Spec{Kind: KindDiff, Repo: repo, Diff: DiffArgs{SnapshotA: id1, SnapshotB: id2[:12]}}, &d)
	want := []DiffChange{{data + "/d00/f0000.txt", "M"}, {data + "/new.txt", "+"}, {data + "/unique.bin", "-"}}
	if !slices.Equal(d.Changes, want) || d.TotalChanges != 3 || d.Truncated {
		t.Errorf("diff changes %+v", d)
	}
	for _, l := range bytes.Split(resticWith(t, r.Restic, repo, "diff", "--json", id1, id2[:12]), []byte("\n")) {
		var s DiffStatistics
		if bytes.Contains(l, []byte(`"statistics"`)) && json.Unmarshal(l, &s) == nil && !reflect.DeepEqual(s, d.Statistics) {
			t.Errorf("diff statistics %+v, restic says %+v", d.Statistics, s)
		}
	}
	if s := d.Statistics; s.ChangedFiles != 1 || s.Added.Files != 1 || s.Removed.Files != 1 || s.Removed.Bytes < 3<<20 {
		t.Errorf("diff statistics %+v", s)
	}

	// ls: the direct children of the data directory, as on disk.
	var ls LsOutput
	runOutput(t, r, Spec{Kind: KindLs, Repo: repo, Ls: LsArgs{SnapshotID: id3, Path: data}}, &ls)
	entries, err := os.ReadDir(data)
	if err != nil {
		t.Fatal(err)
	}
	if ls.Snapshot.ID != id3 || ls.Path != data || len(ls.Entries) != len(entries) || ls.TotalEntries != len(entries) {
		t.Fatalf("ls: %d entries, %d on disk: %+v", len(ls.Entries), len(entries), ls.Entries)
	}
	for i, e := range entries {
		n := ls.Entries[i]
		fi, _ := e.Info()
		wantType := map[bool]string{true: "dir", false: "file"}[e.IsDir()]
		if n.Name != e.Name() || n.Path != filepath.Join(data, e.Name()) || n.Type != wantType || !n.Mtime.Equal(fi.ModTime()) || n.Mode != fi.Mode() ||
			!e.IsDir() && n.Size != uint64(fi.Size()) {
			t.Errorf("ls entry %+v, on disk %s %v %d %v", n, e.Name(), fi.Mode(), fi.Size(), fi.ModTime())
		}
	}

	// LsStream: every node of the snapshot, the directories above data too.
	var nodes []string
	err = r.LsStream(testCtx(t), repo, id3, func(n Node) error {
		nodes = append(nodes, n.Path)
		return nil
	})
	var onDisk []string
	for d := filepath.Dir(data); d != "/"; d = filepath.Dir(d) {
		onDisk = append(onDisk, d)
	}
	_ = filepath.WalkDir(data, func(p string, _ fs.DirEntry, err error) error {
		onDisk = append(onDisk, p)
		return err
	})
	slices.Sort(nodes)
	slices.Sort(onDisk)
	if err != nil || !slices.Equal(nodes, onDisk) {
		t.Errorf("LsStream: %v; %d nodes, %d on disk", err, len(nodes), len(onDisk))
	}
	// Stopped by its function: that error, at once.
	errStop := errors.New("enough")
	count := 0
	err = r.LsStream(testCtx(t), repo, "latest", func(Node) error {
		if count++; count == 3 {
			return errStop
		}
		return nil
	})
	if !errors.Is(err, errStop) || count != 3 {
		t.Errorf("LsStream stopped: %v after %d nodes", err, count)
	}
	var re *RunError
	if err := r.LsStream(testCtx(t), repo, "0123456789", func(Node) error { return nil }); !errors.As(err, &re) || re.Result.Status != StatusFailed {
		t.Errorf("LsStream of a missing snapshot: %v", err)
	}

	// restore: the files, with their content.
	target := t.TempDir()
	var ro RestoreOutput
	runOutput(t, r, Spec{Kind: KindRestore, Repo: repo, Restore: RestoreArgs{SnapshotID: id2, Target: target, Verify: true}}, &ro)
	nFiles, nBytes := 0, uint64(0)
	_ = filepath.WalkDir(data, func(p string, e fs.DirEntry, err error) error {
		if err != nil || e.IsDir() {
			return err
		}
		nFiles++
		want, _ := os.ReadFile(p)
		nBytes += uint64(len(want))
		got, err := os.ReadFile(filepath.Join(target, p))
		if err != nil || !bytes.Equal(got, want) {
			t.Errorf("restored %s: %v", p, err)
		}
		return nil
	})
	if since017 {
		if ro.BytesRestored == nil || *ro.BytesRestored != nBytes || *ro.FilesRestored < uint64(nFiles) || ro.Errors != 0 {
			t.Errorf("restore output %+v: want %d bytes, %d files", ro, nBytes, nFiles)
		}
	} else if ro.FilesVerified == nil || *ro.FilesVerified != uint64(nFiles) || ro.FilesRestored != nil {
		t.Errorf("restore output (no JSON): %+v, want %d verified", ro, nFiles)
	}
	// Only what Include selects.
	target2 := t.TempDir()
	runOK(t, r, Spec{Kind: KindRestore, Repo: repo, Restore: RestoreArgs{SnapshotID: id2[:8], Target: target2, Include: []string{data + "/d01"}}})
	if got, _ := os.ReadDir(filepath.Join(target2, data)); len(got) != 1 || got[0].Name() != "d01" {
		t.Errorf("restore with include: %v", got)
	}
	// Overwrite: restic 0.17+ skips existing files; older ones cannot.
	spec := Spec{Kind: KindRestore, Repo: repo, Restore: RestoreArgs{SnapshotID: id2, Target: target, Overwrite: "never"}}
	if since017 {
		ro = RestoreOutput{}
		runOutput(t, r, spec, &ro)
		if ro.FilesSkipped == nil || *ro.FilesSkipped != uint64(nFiles) || *ro.BytesRestored != 0 {
			t.Errorf("overwrite never: %+v", ro)
		}
	} else if res := r.Run(testCtx(t), spec, Hooks{}); res.Status != StatusFailed || res.ExitCode != -1 || !strings.Contains(res.Error, "always overwrites") {
		t.Errorf("overwrite never on %s: %+v", r.ResticVersion, res)
	}

	// forget: restic's list afterwards is what was kept.
	var fo ForgetOutput
	runOutput(t, r, Spec{Kind: KindForget, Repo: repo, Forget: ForgetArgs{KeepLast: 1, Hosts: []string{"h1"}}}, &fo)
	if len(fo.Groups) != 1 || !slices.Equal(fo.Groups[0].Keep, []string{id2}) || !slices.Equal(fo.Groups[0].Remove, []string{id1}) ||
		len(fo.Groups[0].Reasons) != 1 || fo.Groups[0].Reasons[0].ID != id2 {
		t.Errorf("forget: %+v", fo)
	}
	direct = nil
	if err := json.Unmarshal(resticWith(t, r.Restic, repo, "snapshots", "--json"), &direct); err != nil || len(direct) != 2 || direct[0].ID != id2 || direct[1].ID != id3 {
		t.Errorf("after forget restic lists %+v (%v)", direct, err)
	}

	// prune: the repository shrinks by unique.bin.
	before := dirSize(t, repo.URL)
	var po PruneOutput
	runOutput(t, r, Spec{Kind: KindPrune, Repo: repo, Prune: PruneArgs{MaxUnused: "0%"}}, &po)
	after := dirSize(t, repo.URL)
	if before-after < 3<<20-(64<<10) || po.TotalPrune == nil || po.TotalPrune.Bytes < 3<<20 || po.PacksRemoved == nil || *po.PacksRemoved == 0 {
		t.Errorf("prune: %d -> %d bytes on disk; output %+v", before, after, po)
	}
	t.Logf("prune: %d -> %d bytes on disk", before, after)

	// check, reading half of the data: fine.
	var co CheckOutput
	runOutput(t, r, Spec{Kind: KindCheck, Repo: repo, Check: CheckArgs{ReadDataSubset: "50%"}}, &co)
	if !co.OK || co.NumErrors != 0 || len(co.Messages) != 0 {
		t.Errorf("check: %+v", co)
	}

	// unlock: nothing to remove.
	res := runOK(t, r, Spec{Kind: KindUnlock, Repo: repo})
	if want := map[bool]string{true: `{"removed":0}`, false: `{}`}[since017]; string(res.Output) != want {
		t.Errorf("unlock: %s", res.Output)
	}
	if l := leftovers(t, r.TempDir); len(l) != 0 {
		t.Errorf("left in TempDir: %v", l)
	}
}

func TestStaleLock018(t *testing.T) {
	t.Parallel()
	testStaleLock(t, versionedRunner(t, testenv.Restic(t), "0.18.1"))
}

func TestStaleLock014(t *testing.T) {
	t.Parallel()
	testStaleLock(t, versionedRunner(t, testenv.Restic014(t), "0.14.0"))
}

// testStaleLock: a live lock (a backup waiting on its stdin) is listed and
// blocks an exclusive operation; once its process is killed the lock is
// stale, and unlock removes it.
func testStaleLock(t *testing.T, r *Runner) {
	since017 := VersionAtLeast(r.ResticVersion, "0.17.0")
	r.RetryLock = 1500 * time.Millisecond
	ctx := testCtx(t)
	repo := initRepo(t, r)

	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(repo.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	pr, pwr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	holder := exec.Command(r.Restic, "-r", repo.URL, "--password-file", pw, "--no-cache", "backup", "--stdin", "--host", "holder")
	holder.Stdin = pr
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	killed := false
	kill := func() {
		if !killed {
			killed = true
			_ = holder.Process.Kill()
			_ = holder.Wait() // reaped: its PID is gone
			pwr.Close()
		}
	}
	t.Cleanup(kill)

	var locks []LockInfo
	waitFor(t, func() bool {
		locks, err = r.ListLocks(ctx, repo)
		if err != nil {
			t.Fatal(err)
		}
		return len(locks) > 0
	})
	host, _ := os.Hostname()
	l := locks[0]
	if len(locks) != 1 || !isHex64(l.ID) || l.Hostname != host || l.PID != holder.Process.Pid || l.Exclusive || l.Stale || l.Error != "" || time.Since(l.Time) > time.Minute {
		t.Fatalf("live lock: %+v", locks)
	}
	// The locks kind: the same as Output.
	var viaRun []LockInfo
	runOutput(t, r, Spec{Kind: KindLocks, Repo: repo}, &viaRun)
	if len(viaRun) != 1 || viaRun[0].ID != l.ID || viaRun[0].PID != l.PID {
		t.Errorf("locks op: %+v", viaRun)
	}

	// unlock leaves a live lock alone.
	res := runOK(t, r, Spec{Kind: KindUnlock, Repo: repo})
	if want := map[bool]string{true: `{"removed":0}`, false: `{}`}[since017]; string(res.Output) != want {
		t.Errorf("unlock of a live lock: %s", res.Output)
	}
	// An exclusive operation fails on it: after waiting RetryLock (0.16+),
	// with exit code 11 (0.17+) or 1 and restic's text (older).
	res = r.Run(ctx, Spec{Kind: KindCheck, Repo: repo}, Hooks{})
	took := res.EndedAt.Sub(res.StartedAt)
	if res.Status != StatusFailed || res.Cause != CauseLocked || res.Output != nil || !strings.Contains(res.Error, "repository is already locked") {
		t.Errorf("check on a locked repository: %+v", res)
	}
	if since017 && (res.ExitCode != 11 || took < r.RetryLock) || !since017 && res.ExitCode != 1 {
		t.Errorf("check on a locked repository: exit %d after %v", res.ExitCode, took)
	}

	kill()
	locks, err = r.ListLocks(ctx, repo)
	if err != nil || len(locks) != 1 || locks[0].ID != l.ID || !locks[0].Stale {
		t.Fatalf("after kill: %+v, %v", locks, err)
	}
	res = runOK(t, r, Spec{Kind: KindUnlock, Repo: repo})
	if want := map[bool]string{true: `{"removed":1}`, false: `{}`}[since017]; string(res.Output) != want {
		t.Errorf("unlock of a stale lock: %s", res.Output)
	}
	if locks, err = r.ListLocks(ctx, repo); err != nil || len(locks) != 0 {
		t.Errorf("after unlock: %+v, %v", locks, err)
	}
}

// TestOpsRestServer: maintenance over rest-server (what a repository host
// does), restic 0.18.1.
func TestOpsRestServer(t *testing.T) {
	t.Parallel()
	addr := startRestServer(t)
	r, _ := newRunner(t)
	repo := Repo{URL: "rest:http://agent:pw-in-url@" + addr + "/maint/", Password: "correct horse battery staple"}
	runOK(t, r, Spec{Kind: KindInit, Repo: repo})
	data := t.TempDir()
	for i := range 3 {
		if err := os.WriteFile(filepath.Join(data, "f.txt"), fmt.Appendf(nil, "version %d %s", i, strings.Repeat("x", 1000*i)), 0o644); err != nil {
			t.Fatal(err)
		}
		runOK(t, r, Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{data}}})
	}
	var fo ForgetOutput
	res := runOutput(t, r, Spec{Kind: KindForget, Repo: repo, Forget: ForgetArgs{KeepLast: 1, Prune: true}}, &fo)
	if len(fo.Groups) != 1 || len(fo.Groups[0].Keep) != 1 || len(fo.Groups[0].Remove) != 2 || fo.Prune == nil || fo.Prune.TotalPrune == nil || fo.Prune.TotalPrune.Blobs == 0 {
		t.Errorf("forget --prune: %s", res.Output)
	}
	var snaps []Snapshot
	runOutput(t, r, Spec{Kind: KindSnapshots, Repo: repo}, &snaps)
	if len(snaps) != 1 || snaps[0].ID != fo.Groups[0].Keep[0] {
		t.Errorf("snapshots after forget: %+v", snaps)
	}
	var co CheckOutput
	runOutput(t, r, Spec{Kind: KindCheck, Repo: repo}, &co)
	if !co.OK {
		t.Errorf("check: %+v", co)
	}
	if locks, err := r.ListLocks(testCtx(t), repo); err != nil || len(locks) != 0 {
		t.Errorf("locks: %+v, %v", locks, err)
	}
	b, _ := json.Marshal(res)
	if bytes.Contains(b, []byte("pw-in-url")) {
		t.Errorf("URL password in the result: %s", b)
	}
}
