package console

import (
	"context"
	"encoding/json"
	"html"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"

	"net/http"
	"net/http/httptest"
)

// Policies: the hosts whose labels match get the policy's schedules (marked
// with it) and are bound to its repository; relabelling moves a host out;
// editing re-applies; deleting removes the schedules from every host.
func TestPoliciesApplyByLabel(t *testing.T) {
	c, st, rec := newTestConsole(t)
	withRoles(t, st)
	for _, h := range []struct{ id, role string }{{"host-w1", "web"}, {"host-w2", "web"}, {"host-d1", "db"}} {
		enrolledHost(t, st, h.id)
		if _, err := st.UpdateHost(h.id, func(x *storage.Host) error { x.Labels = map[string]string{"role": h.role}; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	admin, operator := "rmt_trust_admin", "rmt_trust_operator"
	own := func(host string) []map[string]any {
		t.Helper()
		var out struct {
			Version   float64          `json:"version"`
			Schedules []map[string]any `json:"schedules"`
		}
		resp, err := http.DefaultClient.Do(mustReq(t, srv, admin, "GET", "/api/v1/hosts/"+host+"/schedules"))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		decodeJSON(t, resp, &out)
		return out.Schedules
	}

	if code, _ := api.do(operator, "POST", "/api/v1/policies", `{}`); code != http.StatusForbidden {
		t.Errorf("operator creating a policy: %d, want 403", code)
	}
	if code, out := api.do(admin, "POST", "/api/v1/policies", `{"name":"web","selector":{"Role":"web"},"repo_id":"repo-1","schedules":[]}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "selector") {
		t.Errorf("bad selector: %d %v", code, out)
	}
	code, pol := api.do(admin, "POST", "/api/v1/policies", `{"name":"web nightly","selector":{"role":"web"},"repo_id":"repo-1","rpo":"26h",
		"schedules":[{"name":"nightly","kind":"backup","cron":"0 2 * * *","enabled":true,"paths":["/srv"]}]}`)
	if code != http.StatusCreated || pol["hosts"].(float64) != 2 || pol["changed"].(float64) != 2 {
		t.Fatalf("create policy: %d %v", code, pol)
	}
	polID := pol["id"].(string)
	for _, h := range []string{"host-w1", "host-w2"} {
		s := own(h)
		if len(s) != 1 || s[0]["policy_id"] != polID || s[0]["repo_id"] != "repo-1" {
			t.Errorf("%s schedules: %v", h, s)
		}
		d, err := wire.DecodeSchedulesDesired(rec.Last(wire.SchedulesDesiredTopic(h)))
		if err != nil || len(d.Schedules) != 1 {
			t.Errorf("%s desired state: %+v %v", h, d, err)
		}
	}
	if s := own("host-d1"); len(s) != 0 {
		t.Errorf("db host got %v", s)
	}
	// The policy binds its hosts to its repository.
	if code, _ := api.do(operator, "POST", "/api/v1/hosts/host-w1/jobs", `{"kind":"snapshots","repo_id":"repo-1"}`); code != http.StatusCreated {
		t.Errorf("job on a host the policy binds: %d", code)
	}
	if code, _ := api.do(operator, "POST", "/api/v1/hosts/host-d1/jobs", `{"kind":"snapshots","repo_id":"repo-1"}`); code != http.StatusBadRequest {
		t.Errorf("job on a host no policy binds: %d, want 400", code)
	}
	// A fire of the policy's schedule makes a job.
	sched := own("host-w1")[0]
	hs, _ := st.GetSchedules("host-w1")
	at := time.Now().UTC().Truncate(24 * time.Hour).Add(-22 * time.Hour) // 02:00 yesterday
	b, _ := wire.Encode(&wire.Fire{FireID: "f-policy", ScheduleID: sched["id"].(string), ScheduleVersion: hs.Version, ScheduledAt: at, FiredAt: at})
	if err := c.Ingest(context.Background(), "host-w1", wire.Topic{Host: "host-w1", Kind: wire.KindFires}, b); err != nil {
		t.Errorf("fire of a policy schedule: %v", err)
	}
	// Relabelling moves host-w2 out of the policy.
	if code, _ := api.do(operator, "PATCH", "/api/v1/hosts/host-w2", `{"labels":{"role":"db"}}`); code != http.StatusOK {
		t.Fatalf("relabel: %d", code)
	}
	if s := own("host-w2"); len(s) != 0 {
		t.Errorf("relabelled host keeps %v", s)
	}
	// Editing re-applies to the hosts it matches.
	if code, out := api.do(admin, "PUT", "/api/v1/policies/"+polID, `{"name":"web nightly","selector":{"role":"web"},"repo_id":"repo-1",
		"schedules":[{"id":"`+sched["id"].(string)+`","name":"nightly","kind":"backup","cron":"30 3 * * *","enabled":true,"paths":["/srv"]}]}`); code != http.StatusOK || out["changed"].(float64) != 1 {
		t.Errorf("edit: %d %v", code, out)
	}
	if s := own("host-w1"); len(s) != 1 || s[0]["cron"] != "30 3 * * *" {
		t.Errorf("after the edit: %v", s)
	}
	// A PUT of the host's set (as read) keeps only its own schedules.
	if code, _ := api.do(admin, "PUT", "/api/v1/hosts/host-w1/schedules", `[{"id":"`+sched["id"].(string)+`","policy_id":"`+polID+`","name":"nightly","kind":"backup","cron":"30 3 * * *","enabled":true,"repo_id":"repo-1","paths":["/srv"]}]`); code != http.StatusOK {
		t.Errorf("PUT back of a set read from GET: %d", code)
	}
	if s := own("host-w1"); len(s) != 1 || s[0]["policy_id"] != polID {
		t.Errorf("after a PUT back: %v", s)
	}
	// The policy's page shows its history: what each change did, by whom.
	code, page := getPageWith(t, srv, operator, "/policies/"+polID)
	if code != http.StatusOK {
		t.Fatalf("policy page: %d", code)
	}
	hist := page[strings.Index(page, `id="policy-history"`)+1:]
	for _, want := range []string{"created: selector role=web; repository repo-1; nightly (backup 0 2 * * *); RPO 26h; schedules of 2 hosts changed",
		"changed: schedules: nightly (backup 0 2 * * *) → nightly (backup 30 3 * * *); RPO 26h → none; schedules of 1 host changed"} {
		if !strings.Contains(hist, html.EscapeString(want)) {
			t.Errorf("the policy's history lacks %q", want)
		}
	}
	if strings.Index(hist, "changed: schedules") > strings.Index(hist, "created:") {
		t.Error("the history is not newest first")
	}
	// Deleting the policy removes its schedules from every host.
	if code, _ := api.do(admin, "DELETE", "/api/v1/policies/"+polID, ""); code != http.StatusOK {
		t.Fatalf("delete: %d", code)
	}
	// The deletion is the last entry of its history, which stays in the
	// audit log.
	if entries, _, err := st.ListAudit(storage.AuditQuery{Target: "/api/v1/policies/" + polID}); err != nil || len(entries) != 3 ||
		!strings.HasPrefix(entries[0].Detail, `deleted "web nightly" (selector role=web); its schedules removed from 1 host`) || entries[0].Actor == "" {
		t.Errorf("the policy's audit history: %+v %v", entries, err)
	}
	if s := own("host-w1"); len(s) != 0 {
		t.Errorf("after the delete: %v", s)
	}
	if code, _ := api.do(operator, "POST", "/api/v1/hosts/host-w1/jobs", `{"kind":"snapshots","repo_id":"repo-1"}`); code != http.StatusBadRequest {
		t.Errorf("job after the binding policy was deleted: %d, want 400", code)
	}
}

// A repository template makes one repository per matching host (its own
// URL, a generated password, bound to it alone) and initialises it; applying
// again makes no second one; the host's schedules use its repository.
func TestPolicyRepositoryTemplate(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	for _, id := range []string{"host-w1", "host-w2"} {
		enrolledHost(t, st, id)
		if _, err := st.UpdateHost(id, func(x *storage.Host) error {
			x.Labels = map[string]string{"role": "web"}
			x.Name = "Web " + id
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	admin := "rmt_trust_admin"
	if code, out := api.do(admin, "POST", "/api/v1/policies", `{"name":"web","selector":{"role":"web"},"repo_template":{"url":"rest:http://backup:8000/shared/","init":true},"schedules":[]}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "{host}") {
		t.Errorf("a template without {host}: %d %v", code, out)
	}
	code, pol := api.do(admin, "POST", "/api/v1/policies", `{"name":"web","selector":{"role":"web"},
		"repo_template":{"url":"rest:http://backup:8000/{host}/","env":{"RESTIC_REST_USERNAME":"u","RESTIC_REST_PASSWORD":"secret-p"},"init":true},
		"schedules":[{"name":"nightly","kind":"backup","cron":"0 2 * * *","enabled":true,"paths":["/srv"]}]}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, pol)
	}
	if tpl := pol["repo_template"].(map[string]any); tpl["has_env"] != true || strings.Contains(fmtAny(pol), "secret-p") {
		t.Errorf("the policy view: %v", pol)
	}
	repoOf := map[string]string{}
	for _, h := range []string{"host-w1", "host-w2"} {
		hs, _ := st.GetSchedules(h)
		if len(hs.Policy) != 1 {
			t.Fatalf("%s policy schedules: %+v", h, hs.Policy)
		}
		rp, err := st.GetRepo(hs.Policy[0].RepoID)
		if err != nil {
			t.Fatal(err)
		}
		repoOf[h] = rp.ID
		if want := "rest:http://backup:8000/web-" + h + "/"; rp.DisplayURL != want || len(rp.Hosts) != 1 || rp.Hosts[0] != h {
			t.Errorf("%s repository %s: %s, hosts %v (want %s)", h, rp.ID, rp.DisplayURL, rp.Hosts, want)
		}
		sec, _ := st.RepoSecrets(rp.ID)
		if len(sec.Password) < 24 || sec.Env["RESTIC_REST_PASSWORD"] != "secret-p" {
			t.Errorf("%s secrets: password %d chars, env %v", h, len(sec.Password), sec.Env)
		}
		jobs, _, _ := st.ListJobs(storage.JobQuery{HostID: h})
		if len(jobs) != 1 || jobs[0].Kind != wire.JobInit || jobs[0].RepoID != rp.ID {
			t.Errorf("%s jobs: %+v", h, jobs)
		}
	}
	if repoOf["host-w1"] == repoOf["host-w2"] {
		t.Error("two hosts share a template's repository")
	}
	// Applying again (another label on the host) makes nothing new.
	if code, _ := api.do(admin, "PATCH", "/api/v1/hosts/host-w1", `{"labels":{"role":"web","site":"berlin"}}`); code != http.StatusOK {
		t.Fatal("relabel")
	}
	hs, _ := st.GetSchedules("host-w1")
	repos, _ := st.ListRepos()
	if len(repos) != 2 || hs.Policy[0].RepoID != repoOf["host-w1"] {
		t.Errorf("after re-applying: %d repositories, host-w1 uses %s (was %s)", len(repos), hs.Policy[0].RepoID, repoOf["host-w1"])
	}
	if jobs, _, _ := st.ListJobs(storage.JobQuery{HostID: "host-w1"}); len(jobs) != 1 {
		t.Errorf("a second init job: %d jobs", len(jobs))
	}
}

// A repository template's repositories are copy sources when the policy
// copies: each host's init takes the destination's chunker parameters
// (copy_chunker_params_from, the destination sealed in the command), so
// the copies deduplicate there; a template policy that copies nowhere
// inits plainly.
func TestPolicyTemplateCopySourceInit(t *testing.T) {
	c, st, rec := newTestConsole(t)
	withRoles(t, st)
	for _, h := range []struct{ id, role string }{{"host-w1", "web"}, {"host-d1", "db"}} {
		enrolledHost(t, st, h.id)
		if _, err := st.UpdateHost(h.id, func(x *storage.Host) error { x.Labels = map[string]string{"role": h.role}; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-offsite", Name: "offsite", HostsListed: true}, storage.RepoSecrets{URL: "/srv/offsite", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	for _, body := range []string{
		`{"name":"web","selector":{"role":"web"},"repo_template":{"url":"rest:http://backup:8000/{host}/","init":true},"copy_to_repo_id":"repo-offsite","schedules":[]}`,
		`{"name":"db","selector":{"role":"db"},"repo_template":{"url":"rest:http://backup:8000/db-{host}/","init":true},"schedules":[]}`,
	} {
		if code, out := api.do("rmt_trust_admin", "POST", "/api/v1/policies", body); code != http.StatusCreated {
			t.Fatalf("create: %d %v", code, out)
		}
	}
	for h, want := range map[string]string{"host-w1": "repo-offsite", "host-d1": ""} {
		jobs, _, _ := st.ListJobs(storage.JobQuery{HostID: h})
		if len(jobs) != 1 || jobs[0].Kind != wire.JobInit {
			t.Fatalf("%s jobs: %+v", h, jobs)
		}
		var args wire.InitArgs
		if err := json.Unmarshal(jobs[0].Args, &args); err != nil && len(jobs[0].Args) > 0 {
			t.Fatal(err)
		}
		if args.CopyChunkerParamsFrom != want {
			t.Errorf("%s init args %s, want copy_chunker_params_from %q", h, jobs[0].Args, want)
		}
		cmd, err := wire.DecodeCommand(rec.Last(wire.CommandsTopic(h)))
		if err != nil || cmd.JobID != jobs[0].ID || (cmd.SealedFromRepo != "") != (want != "") {
			t.Errorf("%s init command: job %s, sealed_from_repo set %v, %v", h, cmd.JobID, cmd.SealedFromRepo != "", err)
		}
	}
}

func fmtAny(v any) string { b, _ := json.Marshal(v); return string(b) }

// A policy's forget guard threshold applies to the forgets its schedules
// make; others keep the console's 50 %.
func TestPolicyForgetGuardThreshold(t *testing.T) {
	c, st, rec := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-w1")
	if _, err := st.UpdateHost("host-w1", func(x *storage.Host) error { x.Labels = map[string]string{"role": "web"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	code, pol := api.do("rmt_trust_admin", "POST", "/api/v1/policies", `{"name":"web","selector":{"role":"web"},"repo_id":"repo-1","forget_guard":{"max_remove_percent":90},
		"schedules":[{"name":"thin out","kind":"forget","cron":"0 5 * * *","enabled":true,"retention":{"keep_daily":7}}]}`)
	if code != http.StatusCreated {
		t.Fatalf("create: %d %v", code, pol)
	}
	hs, _ := st.GetSchedules("host-w1")
	at := time.Now().UTC().Truncate(24 * time.Hour).Add(-19 * time.Hour) // 05:00 yesterday
	b, _ := wire.Encode(&wire.Fire{FireID: "f-guard", ScheduleID: hs.Policy[0].ID, ScheduleVersion: hs.Version, ScheduledAt: at, FiredAt: at})
	if err := c.Ingest(context.Background(), "host-w1", wire.Topic{Host: "host-w1", Kind: wire.KindFires}, b); err != nil {
		t.Fatal(err)
	}
	cmd, err := wire.DecodeCommand(rec.Last(wire.CommandsTopic("host-w1")))
	if err != nil || cmd.Guard == nil || cmd.Guard.MaxRemovePercent != 90 {
		t.Fatalf("the policy's forget: %+v %v", cmd.Guard, err)
	}
	// (Another repository: the first forget holds repo-1's gate.)
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-2", Name: "r2", Hosts: []string{"host-w1"}, HostsListed: true}, storage.RepoSecrets{URL: "/srv/r2", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if code, _ := api.do("rmt_trust_operator", "POST", "/api/v1/hosts/host-w1/jobs", `{"kind":"forget","repo_id":"repo-2","args":{"retention":{"keep_last":3}}}`); code != http.StatusCreated {
		t.Fatalf("operator forget: %d", code)
	}
	if cmd, _ := wire.DecodeCommand(rec.Last(wire.CommandsTopic("host-w1"))); cmd.Guard == nil || cmd.Guard.MaxRemovePercent != 50 {
		t.Errorf("an operator's forget: guard %+v, want the console's 50", cmd.Guard)
	}
}
