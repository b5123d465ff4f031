package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// The endpoint holds append-only credentials and cannot delete; forget and
// prune run only on the maintenance host, with credentials the endpoint
// never receives.
func TestAppendOnlyWithMaintenanceHost(t *testing.T) {
	s := newServer(t)
	root := t.TempDir()
	endpointRS := restServer(t, root, "--append-only")
	maintRS := restServer(t, root)
	endpointURL := "rest:http://" + endpointRS + "/web-1/"
	maintURL := "rest:http://" + maintRS + "/web-1/"
	password := "append-only-secret"

	ep := s.createHost("web-1")
	epAgent := enrollAgent(t, s, ep.EnrollToken, testenv.Restic(t))
	epAgent.start(t)
	mh := s.createHost("maintenance")
	mAgent := enrollAgent(t, s, mh.EnrollToken, testenv.Restic(t))
	mAgent.start(t)
	s.waitOnline(ep.ID, true)
	s.waitOnline(mh.ID, true)

	var repo struct {
		ID          string `json:"id"`
		Maintenance *struct {
			HostID string `json:"host_id"`
		} `json:"maintenance"`
	}
	s.do("POST", "/api/v1/repos", map[string]any{"name": "web-1", "url": endpointURL, "password": password,
		"maintenance": map[string]any{"url": maintURL, "host_id": mh.ID}, "hosts": []string{ep.ID}}, &repo, 201)
	if repo.Maintenance == nil || repo.Maintenance.HostID != mh.ID {
		t.Fatalf("repo maintenance %+v", repo.Maintenance)
	}
	f := &fleet{srv: s, host: ep, agent: epAgent, repoURL: endpointURL, repoDir: filepath.Join(root, "web-1"), repoID: repo.ID, password: password}
	f.initRepo(t)
	src := makeTree(t, 20)
	first := f.run(t, "backup", map[string]any{"paths": []string{src}})
	f.run(t, "backup", map[string]any{"paths": []string{src}})

	// The endpoint's own credentials cannot delete: restic is refused.
	pw := filepath.Join(t.TempDir(), "pw")
	_ = os.WriteFile(pw, []byte(password), 0o600)
	// (restic 0.18.1 prints the 403 but still exits 0, so look at the output
	// and at what is left; a health refresh may hold a lock meanwhile.)
	out, ferr := exec.Command(testenv.Restic(t), "-r", endpointURL, "--password-file", pw, "--no-cache", "--retry-lock", "1m", "forget", first.SnapshotID).CombinedOutput()
	if !strings.Contains(string(out), "403") {
		t.Fatalf("forget %q through the append-only server was not refused (%v):\n%s", first.SnapshotID, ferr, out)
	}
	if n := len(resticSnapshots(t, endpointURL, password)); n != 2 {
		t.Fatalf("%d snapshots after an attempted deletion from the endpoint, want 2", n)
	}

	// A forget asked of the endpoint runs on the maintenance host.
	fg := f.srv.createJob(ep.ID, map[string]any{"kind": "forget", "repo_id": repo.ID, "args": map[string]any{"retention": map[string]any{"keep_last": 1}, "prune": true}})
	j := f.srv.waitJob(fg, 2*time.Minute)
	if j.Status != "succeeded" || j.HostID != mh.ID {
		t.Fatalf("forget: %s on %s (%s), want succeeded on the maintenance host %s", j.Status, j.HostID, j.Error, mh.ID)
	}
	if n := len(resticSnapshots(t, endpointURL, password)); n != 1 {
		t.Fatalf("%d snapshots after the maintenance forget, want 1", n)
	}

	// Scheduled maintenance fired by the endpoint runs on the maintenance host too.
	r := f.srv.putSchedules(ep.ID, []map[string]any{{
		"name": "prune", "kind": "prune", "cron": "@every 2s", "enabled": true, "repo_id": repo.ID,
	}})
	f.srv.waitApplied(ep.ID, r.Version)
	eventually(t, time.Minute, "a scheduled prune on the maintenance host", func() error {
		for _, j := range scheduledOnly(f.srv.hostJobs(mh.ID)) {
			if j.Kind == "prune" && j.Status == "succeeded" {
				return nil
			}
		}
		return errorf("none yet")
	})
	if n := len(scheduledOnly(f.srv.hostJobs(ep.ID))); n != 0 {
		t.Fatalf("%d scheduled jobs ran on the endpoint", n)
	}

	// The endpoint never received the maintenance URL: the agent's journal
	// holds only ciphertext, and nothing it logged names the maintenance server.
	if strings.Contains(epAgent.Proc.Output(), maintRS) {
		t.Error("the endpoint's log mentions the maintenance server")
	}

	f.srv.putSchedules(ep.ID, []map[string]any{})
	f.run(t, "backup", map[string]any{"paths": []string{src}})

	// A repository without maintenance credentials: a forget on the
	// append-only endpoint fails with restic's reason.
	var plain struct {
		ID string `json:"id"`
	}
	s.do("POST", "/api/v1/repos", map[string]any{"name": "plain", "url": endpointURL, "password": password, "hosts": []string{ep.ID}}, &plain, 201)
	id := s.createJob(ep.ID, map[string]any{"kind": "forget", "repo_id": plain.ID, "args": map[string]any{"retention": map[string]any{"keep_last": 1}}})
	fj := s.waitJob(id, 2*time.Minute)
	if fj.Status != "failed" || fj.HostID != ep.ID || !strings.Contains(fj.Error, "refused to delete") {
		t.Fatalf("forget with append-only credentials: %s on %s: %q", fj.Status, fj.HostID, fj.Error)
	}
	t.Logf("refused forget: %s", fj.Error)

	// A password rotation asked of the repository runs on the maintenance
	// host through the maintenance URL (the endpoint's server would refuse
	// removing the old key); the endpoint backs up with the new password.
	const newPw = "the rotated append-only secret"
	var rot struct {
		JobID  string `json:"job_id"`
		HostID string `json:"host_id"`
	}
	s.do("POST", "/api/v1/repos/"+repo.ID+"/rotate-password", map[string]any{"password": newPw}, &rot, 202)
	if rj := s.waitJob(rot.JobID, 2*time.Minute); rj.Status != "succeeded" || rj.HostID != mh.ID {
		t.Fatalf("rotation: %s on %s: %s %s", rj.Status, rj.HostID, rj.Error, rj.StderrTail)
	}
	if out, err := resticTry(t, endpointURL, password, "snapshots"); err == nil || !strings.Contains(out, "wrong password") {
		t.Errorf("the old password after the rotation: %v %s", err, out)
	}
	f.run(t, "backup", map[string]any{"paths": []string{src}})
	if n := len(resticSnapshots(t, endpointURL, newPw)); n != 3 {
		t.Errorf("%d snapshots with the new password, want 3", n)
	}
}
