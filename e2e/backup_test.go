package e2e

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// fleet is a server, a rest-server, one enrolled host and a repository.
type fleet struct {
	srv      *server
	host     harness.HostCreated
	agent    *agentProc
	repoURL  string
	repoDir  string // the repository's directory under rest-server
	repoID   string
	password string
}

func newFleet(t testing.TB, restic string, serverArgs ...string) *fleet {
	t.Helper()
	return newFleetOn(t, newServer(t, serverArgs...), restic)
}

// newFleetOn builds the fleet around a running server (embedded or
// external broker).
func newFleetOn(t testing.TB, srv *server, restic string) *fleet {
	t.Helper()
	f := &fleet{srv: srv, password: "repo-secret-" + t.Name()}
	root := t.TempDir()
	rs := restServer(t, root)
	f.repoURL = "rest:http://" + rs + "/" + "repo1/"
	f.repoDir = filepath.Join(root, "repo1")
	f.host = f.srv.createHost("web-1")
	if !strings.Contains(f.host.EnrollCommand, f.host.EnrollToken) {
		t.Fatalf("enroll command %q lacks the token", f.host.EnrollCommand)
	}
	if restic == "" {
		restic = testenv.Restic(t)
	}
	f.agent = enrollAgent(t, f.srv, f.host.EnrollToken, restic)
	f.repoID = f.srv.createRepo("main", f.repoURL, f.password, f.host.ID)
	return f
}

func (f *fleet) initRepo(t testing.TB) {
	t.Helper()
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "init", "repo_id": f.repoID})
	if j := f.srv.waitJob(id, 2*time.Minute); j.Status != "succeeded" {
		t.Fatalf("init: %s: %s %s", j.Status, j.Error, j.StderrTail)
	}
}

func TestBackupEndToEnd(t *testing.T) { testBackupEndToEnd(t, embeddedBroker) }

func testBackupEndToEnd(t *testing.T, mode brokerMode) {
	f := newFleetOn(t, mode.server(t), "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	if h := f.srv.host(f.host.ID); !strings.Contains(h.ResticVersion, "0.18.1") {
		t.Errorf("host reports restic %q, want 0.18.1", h.ResticVersion)
	}
	f.initRepo(t)

	src := makeTree(t, 300)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}, "tags": []string{"e2e"}}})
	j := f.srv.waitJob(id, 3*time.Minute)
	if j.Status != "succeeded" {
		t.Fatalf("backup: %s: %s %s", j.Status, j.Error, j.StderrTail)
	}
	if j.ActorKind != "user" || j.Actor != "admin" {
		t.Errorf("actor = %s/%s, want user/admin", j.ActorKind, j.Actor)
	}
	var sum struct {
		SnapshotID          string `json:"snapshot_id"`
		TotalFilesProcessed int    `json:"total_files_processed"`
	}
	if err := json.Unmarshal(j.Summary, &sum); err != nil {
		t.Fatalf("summary %s: %v", j.Summary, err)
	}
	if sum.TotalFilesProcessed != 301 {
		t.Errorf("summary counts %d files, want 301", sum.TotalFilesProcessed)
	}

	// restic, run directly against the repository, sees exactly that snapshot.
	snaps := resticSnapshots(t, f.repoURL, f.password)
	if len(snaps) != 1 {
		t.Fatalf("repository has %d snapshots, want 1", len(snaps))
	}
	if snaps[0].ID != sum.SnapshotID || j.SnapshotID != sum.SnapshotID {
		t.Fatalf("restic lists %s; job summary names %s, job snapshot_id %s", snaps[0].ID, sum.SnapshotID, j.SnapshotID)
	}
	if len(snaps[0].Paths) != 1 || snaps[0].Paths[0] != src {
		t.Errorf("snapshot paths %v, want [%s]", snaps[0].Paths, src)
	}

	// Option injection is refused before anything reaches the agent.
	for _, bad := range []string{"--password-command=sh", "-r"} {
		f.srv.do("POST", "/api/v1/hosts/"+f.host.ID+"/jobs", map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{bad}}}, nil, 400)
	}

	h := f.srv.host(f.host.ID)
	if h.LastBackup == nil || h.LastBackup.JobID != id || h.LastBackup.SnapshotID != sum.SnapshotID {
		t.Errorf("host last_backup = %+v, want job %s snapshot %s", h.LastBackup, id, sum.SnapshotID)
	}

	// The first page lists the host and the job.
	resp, err := f.srv.API.HTTP.Get(f.srv.URL("/"))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"web-1", id, "online", sum.SnapshotID[:12]} {
		if !strings.Contains(string(page), want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}

	// Secrets stay out of the server's and the agent's logs and the API.
	for name, out := range map[string]string{"server": f.srv.Proc.Output(), "agent": f.agent.Proc.Output()} {
		if strings.Contains(out, f.password) {
			t.Errorf("%s log contains the repository password", name)
		}
	}
	var repo map[string]any
	f.srv.do("GET", "/api/v1/repos/"+f.repoID, nil, &repo, 200)
	if b, _ := json.Marshal(repo); strings.Contains(string(b), f.password) {
		t.Errorf("GET /repos shows the password: %s", b)
	}
}

func TestCommandWaitsForStoppedAgent(t *testing.T) {
	testCommandWaitsForStoppedAgent(t, embeddedBroker)
}

func testCommandWaitsForStoppedAgent(t *testing.T, mode brokerMode) {
	f := newFleetOn(t, mode.server(t), "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	stop(t, f.agent.Proc)
	f.srv.waitOnline(f.host.ID, false)

	src := makeTree(t, 20)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	time.Sleep(time.Second)
	if j := f.srv.job(id); j.Status != "queued" {
		t.Fatalf("job for an offline agent is %s, want queued", j.Status)
	}

	f.agent.start(t)
	j := f.srv.waitJob(id, 2*time.Minute)
	if j.Status != "succeeded" {
		t.Fatalf("backup after agent start: %s: %s", j.Status, j.Error)
	}
	if snaps := resticSnapshots(t, f.repoURL, f.password); len(snaps) != 1 || snaps[0].ID != j.SnapshotID {
		t.Fatalf("repository snapshots %+v, want exactly %s", snaps, j.SnapshotID)
	}
}

func errorf(format string, a ...any) error { return fmt.Errorf(format, a...) }

// slowRestic wraps the real restic so that a backup takes a few seconds
// before it starts, long enough to crash the server while it runs.
func slowRestic(t testing.TB, delay string) string {
	return slowResticFor(t, "backup", delay)
}

// slowResticFor delays one restic subcommand by delay seconds, after restic
// would have started (so the agent reports the job running meanwhile).
func slowResticFor(t testing.TB, sub, delay string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "restic-slow")
	script := "#!/bin/sh\ncase \" $* \" in *\" " + sub + " \"*) sleep " + delay + ";; esac\nexec " + testenv.Restic(t) + " \"$@\"\n"
	if err := os.WriteFile(p, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestServerRestartBetweenCommandAndResult(t *testing.T) {
	testServerRestartBetweenCommandAndResult(t, embeddedBroker)
}

func testServerRestartBetweenCommandAndResult(t *testing.T, mode brokerMode) {
	f := newFleetOn(t, mode.server(t), slowRestic(t, "4"))
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)

	src := makeTree(t, 50)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	eventually(t, time.Minute, "job running", func() error {
		if j := f.srv.job(id); j.Status != "running" {
			return errorf("status %s", j.Status)
		}
		return nil
	})
	// Crash the server while restic works; the backup finishes meanwhile.
	f.srv.Proc.Kill()
	eventually(t, 2*time.Minute, "snapshot in the repository", func() error {
		if n := len(resticSnapshots(t, f.repoURL, f.password)); n != 1 {
			return errorf("%d snapshots", n)
		}
		return nil
	})

	srv2 := f.srv.again(t)
	j := srv2.waitJob(id, 2*time.Minute)
	if j.Status != "succeeded" {
		t.Fatalf("after restart: %s: %s", j.Status, j.Error)
	}
	if snaps := resticSnapshots(t, f.repoURL, f.password); len(snaps) != 1 || snaps[0].ID != j.SnapshotID {
		t.Fatalf("repository snapshots %+v, want exactly %s", snaps, j.SnapshotID)
	}
}

func TestAgentRestartMidRunReportsFailure(t *testing.T) {
	testAgentRestartMidRunReportsFailure(t, embeddedBroker)
}

func testAgentRestartMidRunReportsFailure(t *testing.T, mode brokerMode) {
	f := newFleetOn(t, mode.server(t), slowRestic(t, "30"))
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)

	src := makeTree(t, 5)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	eventually(t, time.Minute, "job running", func() error {
		if j := f.srv.job(id); j.Status != "running" {
			return errorf("status %s", j.Status)
		}
		return nil
	})
	f.agent.Proc.Kill()
	f.agent.start(t)
	j := f.srv.waitJob(id, time.Minute)
	if j.Status != "failed" || !strings.Contains(j.Error, "restarted") {
		t.Fatalf("job after agent crash: %s %q, want failed because the agent restarted", j.Status, j.Error)
	}
}

func TestAPIRequiresLogin(t *testing.T) {
	s := newServer(t)
	for _, path := range []string{"/api/v1/hosts", "/api/v1/jobs", "/api/v1/repos"} {
		resp, err := s.HTTP.Get(s.URL(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s = %d, want 401", path, resp.StatusCode)
		}
	}
	resp, err := s.HTTP.Post(s.URL("/api/v1/login"), "application/json", strings.NewReader(`{"username":"admin","password":"wrong"}`))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("login with a wrong password = %d, want 401", resp.StatusCode)
	}
	// A bearer token works for automation.
	var tok struct {
		Token string `json:"token"`
	}
	s.do("POST", "/api/v1/tokens", map[string]string{"name": "ci"}, &tok, 201)
	req, _ := http.NewRequest("GET", s.URL("/api/v1/hosts"), nil)
	req.Header.Set("Authorization", "Bearer "+tok.Token)
	resp, err = s.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("GET /hosts with a bearer token = %d", resp.StatusCode)
	}
	// A cross-site form post is refused even with a valid session cookie.
	req, _ = http.NewRequest("POST", s.URL("/api/v1/hosts"), strings.NewReader(`{"name":"x"}`))
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	req.Header.Set("Content-Type", "application/json")
	resp, err = s.API.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden {
		t.Errorf("cross-site POST = %d, want 403", resp.StatusCode)
	}
}
