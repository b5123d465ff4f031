package console

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// bulkFleet is a console with three web hosts (host-w3 not bound to the
// repository), a web host not enrolled yet, a database host, and
// repo-1 bound to host-w1, host-w2 and host-d1.
func bulkFleet(t *testing.T) (caller, *storage.Store, func(host string) int) {
	t.Helper()
	c, st, rec := newTestConsole(t)
	withRoles(t, st)
	for _, h := range []struct{ id, role string }{{"host-w1", "web"}, {"host-w2", "web"}, {"host-w3", "web"}, {"host-d1", "db"}} {
		enrolledHost(t, st, h.id)
		if _, err := st.UpdateHost(h.id, func(x *storage.Host) error { x.Labels = map[string]string{"role": h.role}; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.CreateHost(storage.Host{ID: "host-new", Name: "new", CreatedAt: time.Now(), Labels: map[string]string{"role": "web"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "main", Hosts: []string{"host-w1", "host-w2", "host-d1"}, HostsListed: true},
		storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	t.Cleanup(srv.Close)
	return caller{t, srv}, st, func(host string) int { return sentTo(rec, host) }
}

// jobCount is how many jobs the store holds.
func jobCount(t *testing.T, st *storage.Store) int {
	t.Helper()
	jobs, _, err := st.ListJobs(storage.JobQuery{Limit: 500})
	if err != nil {
		t.Fatal(err)
	}
	return len(jobs)
}

type bulkAnswer struct {
	JobIDs  []string `json:"job_ids"`
	Refused []struct {
		HostID string `json:"host_id"`
		Error  string `json:"error"`
	} `json:"refused"`
	Error string `json:"error"`
}

func (c caller) bulk(tok, body string) (int, bulkAnswer) {
	c.t.Helper()
	code, out := c.do(tok, "POST", "/api/v1/jobs/bulk", body)
	var a bulkAnswer
	b, _ := json.Marshal(out)
	_ = json.Unmarshal(b, &a)
	return code, a
}

// A bulk run over a label selector makes one job per matching host that
// may run it, each the job a single request would have made (the user as
// actor, sent to that host alone), and lists every other matching host
// with its reason; hosts outside the selector get nothing. The request is
// audited as the operator's.
func TestBulkJobsBySelector(t *testing.T) {
	api, st, sent := bulkFleet(t)
	const operator, admin = "rmt_trust_operator", "rmt_trust_admin"

	code, res := api.bulk(operator, `{"selector":{"role":"web"},"kind":"backup","repo_id":"repo-1","args":{"paths":["/srv"]},"timeout_s":600}`)
	if code != http.StatusCreated || len(res.JobIDs) != 2 {
		t.Fatalf("bulk backup role=web: %d %+v", code, res)
	}
	var hosts []string
	for _, id := range res.JobIDs {
		code, j := api.do(admin, "GET", "/api/v1/jobs/"+id, "")
		if code != http.StatusOK || j["kind"] != "backup" || j["repo_id"] != "repo-1" || j["actor_kind"] != "user" || j["actor"] != "operator" || j["timeout_s"] != 600.0 {
			t.Errorf("job %s: %d %v", id, code, j)
		}
		hosts = append(hosts, j["host_id"].(string))
	}
	if !slices.Equal(hosts, []string{"host-w1", "host-w2"}) {
		t.Errorf("jobs on %v, want host-w1 and host-w2 (in host order)", hosts)
	}
	refused := map[string]string{}
	for _, r := range res.Refused {
		refused[r.HostID] = r.Error
	}
	if len(refused) != 2 || !strings.Contains(refused["host-w3"], "not bound to repository main") || !strings.Contains(refused["host-new"], "has not enrolled") {
		t.Errorf("refused %v, want host-w3 (not bound) and host-new (not enrolled) with their reasons", refused)
	}
	for host, want := range map[string]int{"host-w1": 1, "host-w2": 1, "host-w3": 0, "host-new": 0, "host-d1": 0} {
		if got := sent(host); got != want {
			t.Errorf("%s received %d commands, want %d", host, got, want)
		}
	}
	if n := jobCount(t, st); n != 2 {
		t.Errorf("%d jobs stored, want 2", n)
	}
	entries, _, err := st.ListAudit(storage.AuditQuery{Actor: "operator"})
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Action != "POST /api/v1/jobs/bulk" || entries[0].Status != http.StatusCreated {
		t.Errorf("audit: %+v, want the operator's bulk request", entries)
	}

	// Every host refused: 200, nothing made, each reason given.
	code, res = api.bulk(operator, `{"host_ids":["host-w3","host-new"],"kind":"snapshots","repo_id":"repo-1"}`)
	if code != http.StatusOK || len(res.JobIDs) != 0 || len(res.Refused) != 2 {
		t.Errorf("all refused: %d %+v, want 200, no job, two refusals", code, res)
	}
}

// By host IDs: the hosts in the order given, a repeat counted once, an
// unknown host refused alone. The repository gate still applies to each
// job: of two exclusive checks on one repository, one is sent and the
// other waits.
func TestBulkJobsByHostIDs(t *testing.T) {
	api, st, sent := bulkFleet(t)
	const operator = "rmt_trust_operator"
	code, res := api.bulk(operator, `{"host_ids":["host-d1","host-w1","host-d1","host-nope"],"kind":"check","repo_id":"repo-1"}`)
	if code != http.StatusCreated || len(res.JobIDs) != 2 || len(res.Refused) != 1 ||
		res.Refused[0].HostID != "host-nope" || !strings.Contains(res.Refused[0].Error, "host-nope does not exist") {
		t.Fatalf("bulk check by host_ids: %d %+v", code, res)
	}
	held := 0
	for i, want := range []string{"host-d1", "host-w1"} {
		j, err := st.GetJob(res.JobIDs[i])
		if err != nil || j.HostID != want || j.Kind != "check" || j.Actor != "operator" {
			t.Errorf("job %d: %+v %v, want a check on %s", i, j, err, want)
		}
		if j.Held {
			held++
		}
	}
	if held != 1 || sent("host-d1")+sent("host-w1") != 1 {
		t.Errorf("%d held, %d sent: the gate lets one exclusive check go and holds the other", held, sent("host-d1")+sent("host-w1"))
	}
}

// An invalid request makes no job at all, whatever it matches; a viewer
// may not run one.
func TestBulkJobsInvalidMakeNothing(t *testing.T) {
	api, st, sent := bulkFleet(t)
	const operator, viewer = "rmt_trust_operator", "rmt_trust_viewer"
	for _, tc := range []struct{ body, want string }{
		{`{"selector":{"role":"web"},"kind":"backup","repo_id":"repo-1"}`, "path"},
		{`{"selector":{"role":"web"},"kind":"backup","repo_id":"repo-1","args":{"paths":["--password-command=sh"]}}`, "--password-command"},
		{`{"host_ids":["host-w1","host-w2"],"kind":"backup","repo_id":"repo-1","args":{"paths":["/srv"],"bogus":1}}`, "bogus"},
		{`{"selector":{"role":"web"},"kind":"rm","repo_id":"repo-1"}`, `job kind "rm" is not one of`},
		{`{"selector":{"role":"web"},"kind":"snapshots","repo_id":"repo-nope"}`, `repository "repo-nope" does not exist`},
		{`{"selector":{"role":"web"},"kind":"snapshots","repo_id":"repo-1","timeout_s":-1}`, "timeout_s"},
		{`{"selector":{"role":"web"},"host_ids":["host-w1"],"kind":"snapshots","repo_id":"repo-1"}`, "not both"},
		{`{"kind":"snapshots","repo_id":"repo-1"}`, "selector"},
		{`{"selector":{},"kind":"snapshots","repo_id":"repo-1"}`, "at least one label"},
		{`{"host_ids":[],"kind":"snapshots","repo_id":"repo-1"}`, "no host"},
		{`{"host_ids":["host-w1",""],"kind":"snapshots","repo_id":"repo-1"}`, "host_ids[1] is empty"},
		{`{"selector":{"Role":"web"},"kind":"snapshots","repo_id":"repo-1"}`, "selector: label key"},
		{`{"selector":{"role":"mail"},"kind":"snapshots","repo_id":"repo-1"}`, "no host matches the selector role=mail"},
		{`{"selector":{"role":"web"},"kind":"snapshots","repo_id":"repo-1","hosts":["x"]}`, "unknown field"},
	} {
		code, res := api.bulk(operator, tc.body)
		if code != http.StatusBadRequest || !strings.Contains(res.Error, tc.want) {
			t.Errorf("%s: %d %q, want 400 mentioning %q", tc.body, code, res.Error, tc.want)
		}
	}
	if code, _ := api.bulk(viewer, `{"selector":{"role":"web"},"kind":"snapshots","repo_id":"repo-1"}`); code != http.StatusForbidden {
		t.Errorf("viewer: %d, want 403", code)
	}
	if n := jobCount(t, st); n != 0 {
		t.Errorf("%d jobs made by refused requests", n)
	}
	for _, h := range []string{"host-w1", "host-w2", "host-d1"} {
		if n := sent(h); n != 0 {
			t.Errorf("%s received %d commands", h, n)
		}
	}
}

// One run takes at most 5,000 hosts: 5,001 is refused before anything is
// made, 5,000 is taken (here all unknown, so all refused one by one).
func TestBulkJobsFanOutCapped(t *testing.T) {
	api, st, _ := bulkFleet(t)
	ids := func(n int) string {
		b, _ := json.Marshal(func() []string {
			out := make([]string, n)
			for i := range out {
				out[i] = fmt.Sprintf("host-x%05d", i)
			}
			out[0] = "host-w1"
			return out
		}())
		return string(b)
	}
	code, res := api.bulk("rmt_trust_operator", `{"host_ids":`+ids(5001)+`,"kind":"snapshots","repo_id":"repo-1"}`)
	if code != http.StatusBadRequest || !strings.Contains(res.Error, "5001 hosts: one bulk run takes at most 5000") {
		t.Errorf("5,001 hosts: %d %q, want 400 naming the cap", code, res.Error)
	}
	if n := jobCount(t, st); n != 0 {
		t.Errorf("%d jobs made past the cap", n)
	}
	start := time.Now()
	code, res = api.bulk("rmt_trust_operator", `{"host_ids":`+ids(5000)+`,"kind":"snapshots","repo_id":"repo-1"}`)
	if code != http.StatusCreated || len(res.JobIDs) != 1 || len(res.Refused) != 4999 {
		t.Errorf("5,000 hosts: %d, %d jobs, %d refused; want 201, 1, 4999", code, len(res.JobIDs), len(res.Refused))
	}
	t.Logf("5,000 hosts answered in %v", time.Since(start).Round(time.Millisecond))
}
