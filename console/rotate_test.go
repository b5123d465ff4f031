package console

import (
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A key rotation of an append-only repository runs on its maintenance
// host, through the maintenance URL, with the password the endpoints use
// (the key it replaces) and the new one sealed beside it; only an admin
// starts one, one at a time; the result switches the stored password (and
// the maintenance path's, which shared it) only when the agent says the
// new password opens the repository.
func TestRotatePasswordOnTheMaintenancePath(t *testing.T) {
	c, st, rec := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-w1")
	ident, rcpt, err := seal.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateHost(storage.Host{ID: "host-m1", Name: "maint", Enrolled: true, PublicKey: rcpt, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", HostsListed: true, Hosts: []string{"host-w1"}, MaintenanceHostID: "host-m1"},
		storage.RepoSecrets{URL: "rest:http://ao/r/", Password: "old password 1", Maintenance: &storage.RepoSecrets{URL: "rest:http://full/r/", Password: "old password 1"}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	admin, operator := "rmt_trust_admin", "rmt_trust_operator"

	if code, _ := api.do(operator, "POST", "/api/v1/repos/repo-1/rotate-password", `{"password":"a brand new password"}`); code != http.StatusForbidden {
		t.Errorf("operator rotation: %d, want 403", code)
	}
	for body, want := range map[string]string{
		`{"password":"short"}`:             "at least 12",
		`{"password":" padded password "}`: "white space",
		`{"password":"old password 1"}`:    "current password",
	} {
		if code, out := api.do(admin, "POST", "/api/v1/repos/repo-1/rotate-password", body); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), want) {
			t.Errorf("%s: %d %v, want 400 %q", body, code, out, want)
		}
	}
	code, out := api.do(admin, "POST", "/api/v1/repos/repo-1/rotate-password", `{"password":"a brand new password"}`)
	if code != http.StatusAccepted || out["host_id"] != "host-m1" {
		t.Fatalf("rotation: %d %v", code, out)
	}
	jobID := out["job_id"].(string)
	if code, _ := api.do(admin, "POST", "/api/v1/repos/repo-1/rotate-password", `{"password":"another new password"}`); code != http.StatusConflict {
		t.Errorf("a second rotation meanwhile: %d, want 409", code)
	}
	if code, _ := api.do(admin, "DELETE", "/api/v1/repos/repo-1", ``); code != http.StatusConflict {
		t.Errorf("delete during a rotation: %d, want 409", code)
	}
	_, repo := api.do(admin, "GET", "/api/v1/repos/repo-1", ``)
	if repo["rotation_job_id"] != jobID {
		t.Errorf("repository view: %v", repo)
	}
	var cmd wire.Command
	if err := json.Unmarshal(rec.Last(wire.CommandsTopic("host-m1")), &cmd); err != nil || cmd.Kind != wire.JobRotateKey || cmd.JobID != jobID {
		t.Fatalf("command %+v %v", cmd, err)
	}
	open := func(sealed string) wire.RepoSpec {
		t.Helper()
		b, err := seal.Open(ident, sealed)
		if err != nil {
			t.Fatal(err)
		}
		var r wire.RepoSpec
		_ = json.Unmarshal(b, &r)
		return r
	}
	if r := open(cmd.SealedRepo); r.URL != "rest:http://full/r/" || r.Password != "old password 1" {
		t.Errorf("the repository the rotation opens: %+v", r)
	}
	if r := open(cmd.SealedToRepo); r.URL != "rest:http://full/r/" || r.Password != "a brand new password" {
		t.Errorf("the new password's repository: %+v", r)
	}

	// The agent reports the new key: every later job carries the new
	// password, the maintenance path's too.
	result := func(job string, status string, out wire.RotateKeyOutput) {
		t.Helper()
		b, _ := wire.Encode(&wire.Result{JobID: job, Status: status, EndedAt: time.Now().UTC(), Output: mustJSON(t, out)})
		if err := c.Ingest(context.Background(), "host-m1", wire.Topic{Host: "host-m1", Kind: wire.KindResult, Job: job}, b); err != nil {
			t.Fatal(err)
		}
	}
	result(jobID, wire.StatusSucceeded, wire.RotateKeyOutput{OldKeyID: "aaaa", KeyID: "bbbb", Keys: 1, NewPasswordWorks: true})
	sec := settled(t, st)
	if sec.Password != "a brand new password" || sec.Maintenance.Password != "a brand new password" || sec.NewPassword != "" {
		t.Fatalf("secrets after the rotation: %+v", sec)
	}
	if _, repo := api.do(admin, "GET", "/api/v1/repos/repo-1", ``); repo["rotation_job_id"] != nil || repo["password_rotated_at"] == nil {
		t.Errorf("repository view after: %v", repo)
	}

	// A rotation that failed before restic added the key keeps the old one.
	code, out = api.do(admin, "POST", "/api/v1/repos/repo-1/rotate-password", `{"password":"the third password"}`)
	if code != http.StatusAccepted {
		t.Fatalf("second rotation: %d %v", code, out)
	}
	result(out["job_id"].(string), wire.StatusFailed, wire.RotateKeyOutput{})
	if sec := settled(t, st); sec.Password != "a brand new password" || sec.NewPassword != "" {
		t.Errorf("secrets after a failed rotation: %+v", sec)
	}
	// A rotate_key job cannot be made through POST /jobs.
	if code, _ := api.do(admin, "POST", "/api/v1/hosts/host-m1/jobs", `{"kind":"rotate_key","repo_id":"repo-1"}`); code != http.StatusBadRequest {
		t.Errorf("rotate_key through POST /jobs: %d, want 400", code)
	}
}

// Deleting a repository a policy names is refused with the policy.
func TestDeleteRepoUsedByAPolicy(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	for _, id := range []string{"repo-1", "repo-2"} {
		if _, err := st.CreateRepo(storage.Repo{ID: id, Name: id, HostsListed: true}, storage.RepoSecrets{URL: "/srv/" + id, Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	admin := "rmt_trust_admin"
	if code, out := api.do(admin, "POST", "/api/v1/policies", `{"name":"web","selector":{"role":"web"},"repo_id":"repo-1","copy_to_repo_id":"repo-2","schedules":[]}`); code != http.StatusCreated {
		t.Fatalf("policy: %d %v", code, out)
	}
	for id, want := range map[string]string{"repo-1": "backs up into", "repo-2": "copies into"} {
		if code, out := api.do(admin, "DELETE", "/api/v1/repos/"+id, ``); code != http.StatusConflict || !strings.Contains(out["error"].(string), want) {
			t.Errorf("delete %s: %d %v, want 409 %q", id, code, out, want)
		}
	}
}

// settled waits for the job end's observers (they run after the result
// is stored) to have cleared the pending password.
func settled(t *testing.T, st *storage.Store) storage.RepoSecrets {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		sec, err := st.RepoSecrets("repo-1")
		if err != nil {
			t.Fatal(err)
		}
		if sec.NewPassword == "" || time.Now().After(deadline) {
			return sec
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func mustJSON(t *testing.T, v any) json.RawMessage {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
