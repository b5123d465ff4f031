package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// restic runs restic directly against a repository and returns stdout.
func restic(t testing.TB, repoURL, password string, args ...string) []byte {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Restic(t), append([]string{"-r", repoURL, "--password-file", pw, "--no-cache"}, args...)...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic %v: %v: %s", args, err, stderr.String())
	}
	return out
}

type opJob struct {
	harness.Job
	Output json.RawMessage `json:"output"`
}

func (f *fleet) run(t *testing.T, kind string, args any) opJob {
	t.Helper()
	body := map[string]any{"kind": kind, "repo_id": f.repoID}
	if args != nil {
		body["args"] = args
	}
	id := f.srv.createJob(f.host.ID, body)
	f.srv.waitJob(id, 3*time.Minute)
	var j opJob
	f.srv.do("GET", "/api/v1/jobs/"+id, nil, &j, 200)
	if j.Status != "succeeded" {
		t.Fatalf("%s: %s: %s\n%s", kind, j.Status, j.Error, j.StderrTail)
	}
	return j
}

func TestEveryOperationThroughTheAPI(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)

	src := makeTree(t, 100)
	first := f.run(t, "backup", map[string]any{"paths": []string{src}})
	// Change the tree: one file modified, one added, one removed.
	if err := os.WriteFile(filepath.Join(src, "d01", "f0001.txt"), []byte("changed\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(src, "new.txt"), []byte("new\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(src, "d02", "f0002.txt")); err != nil {
		t.Fatal(err)
	}
	second := f.run(t, "backup", map[string]any{"paths": []string{src}, "tags": []string{"second"}})

	// snapshots: the same IDs restic lists.
	snaps := f.run(t, "snapshots", nil)
	var listed []struct {
		ID   string   `json:"id"`
		Tags []string `json:"tags"`
	}
	if err := json.Unmarshal(snaps.Output, &listed); err != nil {
		t.Fatalf("snapshots output %s: %v", snaps.Output, err)
	}
	direct := resticSnapshots(t, f.repoURL, f.password)
	if len(listed) != 2 || len(direct) != 2 || listed[0].ID != direct[0].ID || listed[1].ID != direct[1].ID {
		t.Fatalf("snapshots job %+v, restic %+v", listed, direct)
	}

	// stats: equal to restic's own.
	stats := f.run(t, "stats", map[string]any{"mode": "restore-size"})
	var got, want struct {
		TotalSize      uint64 `json:"total_size"`
		TotalFileCount uint64 `json:"total_file_count"`
	}
	_ = json.Unmarshal(stats.Output, &got)
	_ = json.Unmarshal(restic(t, f.repoURL, f.password, "stats", "--json", "--mode", "restore-size"), &want)
	if got != want || got.TotalFileCount == 0 {
		t.Fatalf("stats job %+v, restic %+v", got, want)
	}

	// diff: the three changes.
	diff := f.run(t, "diff", map[string]any{"snapshot_a": first.SnapshotID, "snapshot_b": second.SnapshotID})
	var d struct {
		Changes []struct {
			Path     string `json:"path"`
			Modifier string `json:"modifier"`
		} `json:"changes"`
	}
	if err := json.Unmarshal(diff.Output, &d); err != nil {
		t.Fatalf("diff output %s: %v", diff.Output, err)
	}
	mods := map[string]string{}
	for _, c := range d.Changes {
		mods[strings.TrimPrefix(c.Path, src)] = c.Modifier
	}
	if mods["/d01/f0001.txt"] != "M" || mods["/new.txt"] != "+" || mods["/d02/f0002.txt"] != "-" {
		t.Fatalf("diff changes %v", mods)
	}

	// restore: the first snapshot's file comes back with its old content.
	target := t.TempDir()
	f.run(t, "restore", map[string]any{"snapshot_id": first.SnapshotID, "target_path": target, "include": []string{src + "/d01"}})
	b, err := os.ReadFile(filepath.Join(target, src, "d01", "f0001.txt"))
	if err != nil || !strings.HasPrefix(string(b), "line 1\n") {
		t.Fatalf("restored file: %q %v", b, err)
	}
	if _, err := os.Stat(filepath.Join(target, src, "d02")); err == nil {
		t.Error("restore ignored include")
	}

	// check: no errors.
	chk := f.run(t, "check", map[string]any{"read_data_subset": "1/2"})
	var c struct {
		OK        bool `json:"ok"`
		NumErrors int  `json:"num_errors"`
	}
	if err := json.Unmarshal(chk.Output, &c); err != nil || !c.OK || c.NumErrors != 0 {
		t.Fatalf("check output %s", chk.Output)
	}

	// forget keep_last 1: exactly the older snapshot goes, as restic's policy says.
	fg := f.run(t, "forget", map[string]any{"retention": map[string]any{"keep_last": 1}})
	var groups struct {
		Groups []struct {
			Keep   []string `json:"keep"`
			Remove []string `json:"remove"`
		} `json:"groups"`
	}
	if err := json.Unmarshal(fg.Output, &groups); err != nil || len(groups.Groups) != 1 {
		t.Fatalf("forget output %s: %v", fg.Output, err)
	}
	g := groups.Groups[0]
	if len(g.Keep) != 1 || g.Keep[0] != second.SnapshotID || len(g.Remove) != 1 || g.Remove[0] != first.SnapshotID {
		t.Fatalf("forget kept %v removed %v; want keep %s remove %s", g.Keep, g.Remove, second.SnapshotID, first.SnapshotID)
	}
	if left := resticSnapshots(t, f.repoURL, f.password); len(left) != 1 || left[0].ID != second.SnapshotID {
		t.Fatalf("after forget restic lists %+v", left)
	}

	// unlock and the locks probe run and report.
	f.run(t, "unlock", nil)
	locks := f.run(t, "locks", nil)
	if strings.TrimSpace(string(locks.Output)) == "" {
		t.Error("locks job has no output")
	}
}

// dirSize sums the sizes of the files below dir.
func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	_ = filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestForgetThenPruneShrinksTheRepository(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := t.TempDir()
	for i := range 3 {
		// Each backup holds 4 MiB of data no other snapshot shares.
		big := make([]byte, 4<<20)
		_, _ = rand.Read(big)
		if err := os.WriteFile(filepath.Join(src, "data.bin"), big, 0o644); err != nil {
			t.Fatal(err)
		}
		f.run(t, "backup", map[string]any{"paths": []string{src}, "tags": []string{"round" + string(rune('0'+i))}})
	}
	before := dirSize(t, f.repoDir)
	// Forgetting 2 of 3 snapshots is more than the guard's half: it is
	// held, deleting nothing, until an admin approves it.
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "forget", "repo_id": f.repoID, "args": map[string]any{"retention": map[string]any{"keep_last": 1}}})
	eventually(t, 3*time.Minute, "the forget held by its guard", func() error {
		if j := f.srv.job(id); j.Status != "held" {
			return errorf("status %s", j.Status)
		}
		return nil
	})
	if n := len(resticSnapshots(t, f.repoURL, f.password)); n != 3 {
		t.Fatalf("%d snapshots while the forget is held, want 3", n)
	}
	f.srv.do("POST", "/api/v1/jobs/"+id+"/approve", nil, nil, 200)
	if j := f.srv.waitJob(id, 3*time.Minute); j.Status != "succeeded" {
		t.Fatalf("approved forget: %s %s", j.Status, j.Error)
	}
	f.run(t, "prune", map[string]any{"max_unused": "0%"})
	after := dirSize(t, f.repoDir)
	if after >= before-6<<20 {
		t.Fatalf("repository %d bytes before prune, %d after: want at least 6 MiB less", before, after)
	}
	if n := len(resticSnapshots(t, f.repoURL, f.password)); n != 1 {
		t.Fatalf("%d snapshots after forget, want 1", n)
	}
	restic(t, f.repoURL, f.password, "check", "--no-lock") // a health refresh may hold a lock now
}

func TestCancelRunningBackupLeavesNoLock(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := t.TempDir()
	for i := range 4 {
		big := make([]byte, 64<<20)
		_, _ = rand.Read(big)
		if err := os.WriteFile(filepath.Join(src, "big"+string(rune('a'+i))), big, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	eventually(t, time.Minute, "backup running", func() error {
		if j := f.srv.job(id); j.Status != "running" {
			return errorf("status %s", j.Status)
		}
		return nil
	})
	var cj harness.Job
	f.srv.do("POST", "/api/v1/jobs/"+id+"/cancel", nil, &cj, 200)
	j := f.srv.waitJob(id, time.Minute)
	if j.Status != "cancelled" {
		t.Fatalf("cancelled backup ended %s: %s", j.Status, j.Error)
	}
	if locks := strings.TrimSpace(string(restic(t, f.repoURL, f.password, "list", "locks", "--no-lock"))); locks != "" {
		t.Fatalf("locks left behind: %s", locks)
	}

	// A queued job cancelled before its agent sees it never runs.
	stop(t, f.agent.Proc)
	f.srv.waitOnline(f.host.ID, false)
	id2 := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	f.srv.do("POST", "/api/v1/jobs/"+id2+"/cancel", nil, &cj, 200)
	if cj.Status != "cancelled" {
		t.Fatalf("queued job after cancel: %s", cj.Status)
	}
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	time.Sleep(3 * time.Second)
	if j := f.srv.job(id2); j.Status != "cancelled" || j.StartedAt.After(time.Time{}) {
		t.Fatalf("cancelled job ran anyway: %+v", j)
	}
	if n := len(resticSnapshots(t, f.repoURL, f.password)); n != 0 {
		t.Fatalf("%d snapshots after cancelled backups", n)
	}
}

// Exclusive operations never overlap on one repository, across hosts, and
// a backup waits for a running check and then succeeds.
func TestExclusiveJobsDoNotOverlap(t *testing.T) {
	f := newFleet(t, slowResticFor(t, "check", "4"))
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 20)
	f.run(t, "backup", map[string]any{"paths": []string{src}})

	// A second host on the same repository.
	h2 := f.srv.createHost("web-2")
	f.srv.bindHosts(f.repoID, h2.ID)
	a2 := enrollAgent(t, f.srv, h2.EnrollToken, testenv.Restic(t))
	a2.start(t)
	f.srv.waitOnline(h2.ID, true)

	check := f.srv.createJob(f.host.ID, map[string]any{"kind": "check", "repo_id": f.repoID})
	eventually(t, time.Minute, "check running", func() error {
		if j := f.srv.job(check); j.Status != "running" {
			return errorf("status %s", j.Status)
		}
		return nil
	})
	forget := f.srv.createJob(h2.ID, map[string]any{"kind": "forget", "repo_id": f.repoID, "args": map[string]any{"retention": map[string]any{"keep_last": 5}}})
	backup := f.srv.createJob(h2.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	var held struct {
		Held bool `json:"held"`
	}
	f.srv.do("GET", "/api/v1/jobs/"+backup, nil, &held, 200)
	if !held.Held {
		t.Error("a backup was sent while a check ran on its repository")
	}
	jc := f.srv.waitJob(check, 2*time.Minute)
	jf := f.srv.waitJob(forget, 2*time.Minute)
	jb := f.srv.waitJob(backup, 2*time.Minute)
	for _, j := range []harness.Job{jc, jf, jb} {
		if j.Status != "succeeded" {
			t.Fatalf("%s %s: %s %s", j.Kind, j.ID, j.Status, j.Error)
		}
	}
	var full struct {
		EndedAt time.Time `json:"ended_at"`
		Waited  bool      `json:"waited"`
	}
	f.srv.do("GET", "/api/v1/jobs/"+check, nil, &full, 200)
	checkEnd := full.EndedAt
	f.srv.do("GET", "/api/v1/jobs/"+forget, nil, &full, 200)
	if jf.StartedAt.Before(checkEnd) || !full.Waited {
		t.Errorf("forget started %s, before the check ended %s (waited=%v)", jf.StartedAt, checkEnd, full.Waited)
	}
	forgetEnd := full.EndedAt
	f.srv.do("GET", "/api/v1/jobs/"+backup, nil, &full, 200)
	if jb.StartedAt.Before(forgetEnd) || !full.Waited {
		t.Errorf("backup started %s, before the forget ended %s (waited=%v)", jb.StartedAt, forgetEnd, full.Waited)
	}
}

type repoHealth struct {
	SizeBytes     uint64  `json:"size_bytes"`
	DedupRatio    float64 `json:"dedup_ratio"`
	SnapshotCount int     `json:"snapshot_count"`
	LastCheck     *struct {
		OK bool `json:"ok"`
	} `json:"last_check"`
	Locks struct {
		Count int `json:"count"`
		Stale int `json:"stale"`
	} `json:"locks"`
	UpdatedAt time.Time `json:"updated_at"`
}

func (f *fleet) health(t *testing.T) repoHealth {
	var r struct {
		Health *repoHealth `json:"health"`
	}
	f.srv.do("GET", "/api/v1/repos/"+f.repoID, nil, &r, 200)
	if r.Health == nil {
		return repoHealth{}
	}
	return *r.Health
}

func TestRepositoryHealthAndStaleLocks(t *testing.T) {
	f := newFleet(t, "", "--health-delay=1s")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 50)
	f.run(t, "backup", map[string]any{"paths": []string{src}})
	f.run(t, "backup", map[string]any{"paths": []string{src}}) // unchanged: dedup doubles
	f.run(t, "check", nil)

	// The console refreshes health after the backups on its own.
	eventually(t, time.Minute, "health after backups", func() error {
		h := f.health(t)
		if h.SnapshotCount != 2 || h.SizeBytes == 0 || h.LastCheck == nil {
			return errorf("%+v", h)
		}
		return nil
	})
	h := f.health(t)
	if !h.LastCheck.OK || h.DedupRatio < 1.5 {
		t.Errorf("health %+v: want a passed check and a dedup ratio near 2", h)
	}
	var snaps []struct {
		ID string `json:"id"`
	}
	f.srv.do("GET", "/api/v1/repos/"+f.repoID+"/snapshots?host_id="+f.host.ID, nil, &snaps, 200)
	direct := resticSnapshots(t, f.repoURL, f.password)
	if len(snaps) != 2 || snaps[0].ID != direct[0].ID || snaps[1].ID != direct[1].ID {
		t.Fatalf("cached snapshots %+v, restic %+v", snaps, direct)
	}

	// A restic killed with -9 leaves its lock behind. It backs up a pipe
	// that never ends, so it cannot finish (and remove its lock) before the
	// kill however slow the machine is (a 192 MiB backup once did, on CI).
	pr, pw, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer pw.Close()
	pwFile := filepath.Join(t.TempDir(), "pw")
	_ = os.WriteFile(pwFile, []byte(f.password), 0o600)
	cmd := exec.Command(testenv.Restic(t), "-r", f.repoURL, "--password-file", pwFile, "--no-cache",
		"backup", "--stdin", "--stdin-filename", "endless")
	cmd.Stdin = pr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	pr.Close()
	listLocks := func() string {
		return strings.TrimSpace(string(restic(t, f.repoURL, f.password, "list", "locks", "--no-lock")))
	}
	eventually(t, 30*time.Second, "restic to take its lock", func() error {
		if listLocks() == "" {
			return errorf("no lock yet")
		}
		return nil
	})
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
	if listLocks() == "" {
		t.Fatal("the killed restic's lock is gone before the health job ran")
	}

	f.run(t, "health", nil)
	if h := f.health(t); h.Locks.Stale != 1 {
		t.Fatalf("health after a killed restic: locks %+v, want one stale", h.Locks)
	}
	// The repository page says so.
	resp, err := f.srv.API.HTTP.Get(f.srv.URL("/repos/" + f.repoID))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"1 stale", "run unlock", "passed", "2</strong> snapshots", "<polyline", `id="unlock-run"`} {
		if !strings.Contains(string(page), want) {
			t.Errorf("repository page lacks %q", want)
		}
	}
	f.run(t, "unlock", nil)
	eventually(t, time.Minute, "locks cleared in health", func() error {
		if h := f.health(t); h.Locks.Count != 0 {
			return errorf("locks %+v", h.Locks)
		}
		return nil
	})
	if locks := strings.TrimSpace(string(restic(t, f.repoURL, f.password, "list", "locks", "--no-lock"))); locks != "" {
		t.Fatalf("unlock left %s", locks)
	}
}

func TestRestoreToAnotherHost(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 30)
	b1 := f.run(t, "backup", map[string]any{"paths": []string{src}})
	_ = os.WriteFile(filepath.Join(src, "later.txt"), []byte("later\n"), 0o644)
	b2 := f.run(t, "backup", map[string]any{"paths": []string{src}})

	other := f.srv.createHost("restore-target")
	// Restoring onto it sends it the repository's secrets: an admin binds it.
	f.srv.bindHosts(f.repoID, other.ID)
	a2 := enrollAgent(t, f.srv, other.EnrollToken, testenv.Restic(t))
	a2.start(t)
	f.srv.waitOnline(other.ID, true)

	target := t.TempDir()
	var r struct {
		JobID string `json:"job_id"`
	}
	f.srv.do("POST", "/api/v1/restores", map[string]any{
		"repo_id": f.repoID, "snapshot_id": b1.SnapshotID, "include": []string{src + "/d03", src + "/big.bin"},
		"target_host_id": other.ID, "target_path": target,
	}, &r, 201)
	j := f.srv.waitJob(r.JobID, 2*time.Minute)
	if j.Status != "succeeded" || j.HostID != other.ID {
		t.Fatalf("restore on another host: %s on %s: %s", j.Status, j.HostID, j.Error)
	}
	want, _ := os.ReadFile(filepath.Join(src, "big.bin"))
	got, err := os.ReadFile(filepath.Join(target, src, "big.bin"))
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("restored big.bin differs (%v)", err)
	}
	if _, err := os.Stat(filepath.Join(target, src, "d03", "f0003.txt")); err != nil {
		t.Fatalf("restored folder missing: %v", err)
	}
	if _, err := os.Stat(filepath.Join(target, src, "d04")); err == nil {
		t.Fatal("a folder that was not selected was restored")
	}
	// Escaping or relative targets are refused before anything is sent.
	for _, bad := range []string{"relative/dir", "/tmp/../etc", "-rf"} {
		f.srv.do("POST", "/api/v1/restores", map[string]any{"repo_id": f.repoID, "snapshot_id": b1.SnapshotID, "target_host_id": other.ID, "target_path": bad}, nil, 400)
	}

	// Diff changes page through the API.
	d := f.run(t, "diff", map[string]any{"snapshot_a": b1.SnapshotID, "snapshot_b": b2.SnapshotID})
	var page struct {
		TotalChanges int `json:"total_changes"`
		Changes      []struct {
			Path string `json:"path"`
		} `json:"changes"`
	}
	f.srv.do("GET", "/api/v1/jobs/"+d.ID+"/changes?limit=1", nil, &page, 200)
	if page.TotalChanges < 1 || len(page.Changes) != 1 {
		t.Fatalf("diff page %+v", page)
	}
}
