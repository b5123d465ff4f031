package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A policy's copy destination: checked, shown, binding its hosts to it
// (a copy from them is accepted and carries both repositories sealed),
// its copy schedules' default, and the compliance report's copy_lag.
func TestPolicyCopyDestination(t *testing.T) {
	c, st, rec := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-w1")
	enrolledHost(t, st, "host-d1")
	for id, role := range map[string]string{"host-w1": "web", "host-d1": "db"} {
		if _, err := st.UpdateHost(id, func(x *storage.Host) error {
			x.Labels, x.Hostname = map[string]string{"role": role}, id+".example"
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	for _, id := range []string{"repo-1", "repo-2"} {
		if _, err := st.CreateRepo(storage.Repo{ID: id, Name: id, HostsListed: true}, storage.RepoSecrets{URL: "/srv/" + id, Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	admin, operator := "rmt_trust_admin", "rmt_trust_operator"

	if code, out := api.do(admin, "POST", "/api/v1/policies", `{"name":"web","selector":{"role":"web"},"repo_id":"repo-1","copy_to_repo_id":"repo-1","schedules":[]}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "another repository") {
		t.Errorf("copy to the policy's own repository: %d %v", code, out)
	}
	if code, out := api.do(admin, "POST", "/api/v1/policies", `{"name":"web","selector":{"role":"web"},"repo_id":"repo-1","schedules":[{"name":"catch up","kind":"copy","cron":"0 4 * * *","enabled":true}]}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "to_repo_id") {
		t.Errorf("a copy schedule without a destination: %d %v", code, out)
	}
	code, pol := api.do(admin, "POST", "/api/v1/policies", `{"name":"web","selector":{"role":"web"},"repo_id":"repo-1","rpo":"26h","copy_to_repo_id":"repo-2","copy_lag_max":2,
		"schedules":[{"name":"catch up","kind":"copy","cron":"0 4 * * *","enabled":true}]}`)
	if code != http.StatusCreated || pol["copy_to_repo_id"] != "repo-2" || pol["copy_lag_max"].(float64) != 2 {
		t.Fatalf("create policy: %d %v", code, pol)
	}
	if s := pol["schedules"].([]any)[0].(map[string]any); s["to_repo_id"] != "repo-2" {
		t.Errorf("copy schedule: %v", s)
	}

	// Bound to both through the policy: the copy goes out with both sealed.
	code, out := api.do(operator, "POST", "/api/v1/hosts/host-w1/jobs", `{"kind":"copy","repo_id":"repo-1","args":{"to_repo_id":"repo-2"}}`)
	if code != http.StatusCreated {
		t.Fatalf("copy: %d %v", code, out)
	}
	var cmd wire.Command
	if err := json.Unmarshal(rec.Last(wire.CommandsTopic("host-w1")), &cmd); err != nil || cmd.Kind != wire.JobCopy || cmd.SealedToRepo == "" || cmd.SealedRepo == "" {
		t.Fatalf("command %+v %v", cmd, err)
	}
	if !strings.Contains(string(cmd.Args), `"hostname":"host-w1.example"`) {
		t.Errorf("copy args %s", cmd.Args)
	}
	// A host the policy does not match is bound to neither.
	if code, out := api.do(operator, "POST", "/api/v1/hosts/host-d1/jobs", `{"kind":"copy","repo_id":"repo-1","args":{"to_repo_id":"repo-2"}}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "not bound") {
		t.Errorf("copy from an unbound host: %d %v", code, out)
	}

	// The report's copy_lag: the host's own missing snapshots.
	oldest := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	if _, err := st.UpdateRepo("repo-1", func(r *storage.Repo) error {
		r.Health = &storage.RepoHealth{CopyLag: []storage.CopyLag{{ToRepoID: "repo-2", MissingSnapshots: 5,
			ByHost: map[string]int{"host-w1.example": 3, "other": 2}, OldestByHost: map[string]time.Time{"host-w1.example": oldest}}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	code, rep, _, _ := getCompliance(t, srv, admin, "")
	if code != http.StatusOK || len(rep.Rows) != 1 {
		t.Fatalf("report: %d %+v", code, rep)
	}
	lag, _ := rep.Rows[0]["copy_lag"].(map[string]any)
	if lag == nil || lag["to_repo_id"] != "repo-2" || lag["missing_snapshots"].(float64) != 3 || !sameTime(lag["oldest_missing_at"], oldest) {
		t.Errorf("report copy_lag: %v", rep.Rows[0])
	}
}
