package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

type caller struct {
	t   testing.TB
	srv *httptest.Server
}

func (c caller) do(tok, method, path, body string) (int, map[string]any) {
	c.t.Helper()
	req, _ := http.NewRequest(method, c.srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	defer resp.Body.Close()
	var out map[string]any
	_ = json.NewDecoder(resp.Body).Decode(&out)
	return resp.StatusCode, out
}

func withRoles(t *testing.T, st *storage.Store) {
	t.Helper()
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		if err := st.CreateUser(storage.User{Name: role, Role: role, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if err := st.PutAPIToken(token.Hash("rmt_trust_"+role), storage.APIToken{ID: "tok-" + role, Name: role, User: role}); err != nil {
			t.Fatal(err)
		}
	}
}

// sentTo counts the commands (which carry sealed repository secrets)
// published to a host.
func sentTo(rec *teststore.Recorder, host string) int {
	n := 0
	for _, topic := range rec.Sent() {
		if strings.Contains(topic, "/hosts/"+host+"/commands") {
			n++
		}
	}
	return n
}

// Finding 1: a repository's secrets reach only the hosts bound to it. A
// viewer's read starts nothing anywhere; an operator cannot send a job of
// any kind (index included) to an unbound host; an admin binds hosts.
func TestRepositorySecretsReachOnlyBoundHosts(t *testing.T) {
	c, st, rec := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-a")
	enrolledHost(t, st, "host-x")
	if _, err := st.UpdateHost("host-a", func(h *storage.Host) error { h.Online = true; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a"}, HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	sid := strings.Repeat("ab", 32)
	if err := st.PutSnapshotCache("repo-1", []byte(`[{"id":"`+sid+`","hostname":"a"}]`)); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	viewer, operator, admin := "rmt_trust_viewer", "rmt_trust_operator", "rmt_trust_admin"

	// A viewer browsing an unindexed snapshot with host_id=host-x: nothing
	// is started, nothing is sent.
	if code, body := api.do(viewer, "GET", "/api/v1/repos/repo-1/snapshots/"+sid+"/ls?host_id=host-x", ""); code != http.StatusConflict || body["indexed"] != false {
		t.Errorf("viewer ls of an unindexed snapshot: %d %v, want 409 not indexed", code, body)
	}
	if code, _ := api.do(viewer, "POST", "/api/v1/repos/repo-1/snapshots/"+sid+"/index", `{"host_id":"host-x"}`); code != http.StatusForbidden {
		t.Errorf("viewer starting an index: %d, want 403", code)
	}
	// An operator cannot send the repository to host-x, by any kind.
	if code, _ := api.do(operator, "POST", "/api/v1/repos/repo-1/snapshots/"+sid+"/index", `{"host_id":"host-x"}`); code != http.StatusBadRequest {
		t.Errorf("operator indexing on an unbound host: %d, want 400", code)
	}
	for _, kind := range []string{"backup", "snapshots", "health", "locks", "init"} {
		body := `{"kind":"` + kind + `","repo_id":"repo-1"}`
		if kind == "backup" {
			body = `{"kind":"backup","repo_id":"repo-1","args":{"paths":["/etc"]}}`
		}
		if code, out := api.do(operator, "POST", "/api/v1/hosts/host-x/jobs", body); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "not bound") {
			t.Errorf("operator %s job on an unbound host: %d %v, want 400 not bound", kind, code, out)
		}
	}
	if code, _ := api.do(operator, "POST", "/api/v1/restores", `{"repo_id":"repo-1","snapshot_id":"`+sid+`","target_host_id":"host-x","target_path":"/tmp/r"}`); code != http.StatusBadRequest {
		t.Errorf("operator restore onto an unbound host: %d, want 400", code)
	}
	// Nor bind it by giving it a schedule, nor change the list.
	sched := `[{"name":"n","kind":"backup","cron":"0 2 * * *","enabled":true,"repo_id":"repo-1","paths":["/etc"]}]`
	if code, _ := api.do(operator, "PUT", "/api/v1/hosts/host-x/schedules", sched); code != http.StatusBadRequest {
		t.Errorf("operator schedule on an unbound repository: %d, want 400", code)
	}
	if code, _ := api.do(operator, "PATCH", "/api/v1/repos/repo-1", `{"hosts":["host-a","host-x"]}`); code != http.StatusForbidden {
		t.Errorf("operator changing the access list: %d, want 403", code)
	}
	if n := sentTo(rec, "host-x"); n != 0 {
		t.Fatalf("%d commands sent to the unbound host", n)
	}
	// An operator indexes on the bound host.
	if code, out := api.do(operator, "POST", "/api/v1/repos/repo-1/snapshots/"+sid+"/index", ""); code != http.StatusAccepted {
		t.Errorf("operator indexing on a bound host: %d %v", code, out)
	}
	if sentTo(rec, "host-a") != 1 {
		t.Errorf("the index job was not sent to the bound host")
	}
	// An admin binds host-x (by its schedule); then it may receive jobs.
	if code, out := api.do(admin, "PUT", "/api/v1/hosts/host-x/schedules", sched); code != http.StatusOK {
		t.Fatalf("admin schedule: %d %v", code, out)
	}
	if rp, _ := st.GetRepo("repo-1"); strings.Join(rp.Hosts, ",") != "host-a,host-x" {
		t.Errorf("access list after the admin's schedule: %v", rp.Hosts)
	}
	if code, _ := api.do(operator, "POST", "/api/v1/hosts/host-x/jobs", `{"kind":"snapshots","repo_id":"repo-1"}`); code != http.StatusCreated {
		t.Errorf("operator job on a bound host: %d", code)
	}
	// The list cannot drop a host whose schedule uses the repository.
	if code, _ := api.do(admin, "PATCH", "/api/v1/repos/repo-1", `{"hosts":["host-a"]}`); code != http.StatusConflict {
		t.Errorf("dropping a scheduled host from the list: %d, want 409", code)
	}
	if code, _ := api.do(admin, "DELETE", "/api/v1/repos/repo-1", ""); code != http.StatusConflict {
		t.Errorf("deleting a scheduled repository: %d, want 409", code)
	}
}

// Finding 9: operators run the fleet but cannot widen trust: a maintenance
// host's enrolment token and repository secrets are an admin's, and a
// repository's environment is a backend's variables only.
func TestOperatorsCannotWidenTrust(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-a")
	enrolledHost(t, st, "host-m")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a"}, HostsListed: true, MaintenanceHostID: "host-m"},
		storage.RepoSecrets{URL: "/srv/r", Password: "pw", Maintenance: &storage.RepoSecrets{URL: "/srv/r", Password: "pw"}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	operator, admin := "rmt_trust_operator", "rmt_trust_admin"
	if code, _ := api.do(operator, "POST", "/api/v1/hosts/host-m/enroll-token", ""); code != http.StatusForbidden {
		t.Errorf("operator re-enrolling the maintenance host: %d, want 403", code)
	}
	if code, _ := api.do(operator, "POST", "/api/v1/hosts/host-a/enroll-token", ""); code != http.StatusCreated {
		t.Errorf("operator re-enrolling an endpoint: %d, want 201", code)
	}
	if code, _ := api.do(admin, "POST", "/api/v1/hosts/host-m/enroll-token", ""); code != http.StatusCreated {
		t.Errorf("admin re-enrolling the maintenance host: %d, want 201", code)
	}
	for _, env := range []string{`{"LD_PRELOAD":"/tmp/x.so"}`, `{"PATH":"/tmp"}`, `{"RESTIC_PASSWORD_COMMAND":"sh -c id"}`, `{"RCLONE_CONFIG":"/tmp/x"}`} {
		code, out := api.do(admin, "POST", "/api/v1/repos", `{"name":"n","url":"/srv/n","password":"pw","env":`+env+`}`)
		if code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "not a restic backend variable") {
			t.Errorf("repository env %s: %d %v, want 400", env, code, out)
		}
	}
	if code, out := api.do(admin, "POST", "/api/v1/repos", `{"name":"s3","url":"s3:h/b","password":"pw","env":{"AWS_ACCESS_KEY_ID":"k","AWS_SECRET_ACCESS_KEY":"s"},"hosts":["host-a"]}`); code != http.StatusCreated || out["hosts"] == nil {
		t.Errorf("repository with backend env: %d %v", code, out)
	}
	if code, _ := api.do(admin, "PATCH", "/api/v1/repos/repo-1", `{"env":{"LD_PRELOAD":"/x"}}`); code != http.StatusBadRequest {
		t.Errorf("PATCH with LD_PRELOAD: %d, want 400", code)
	}
}

func mustReq(t *testing.T, srv *httptest.Server, tok, method, path string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, srv.URL+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Authorization", "Bearer "+tok)
	return req
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatalf("%s: %v", resp.Request.URL, err)
	}
}
