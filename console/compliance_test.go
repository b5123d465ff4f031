package console

import (
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
)

// complianceOut is GET /api/v1/reports/compliance's JSON.
type complianceOut struct {
	GeneratedAt time.Time `json:"generated_at"`
	Totals      struct {
		Hosts, Within, Breached int
		NoRPO                   int `json:"no_rpo"`
	} `json:"totals"`
	Rows []map[string]any `json:"rows"`
}

func getCompliance(t *testing.T, srv *httptest.Server, tok, query string) (int, complianceOut, *http.Response, []byte) {
	t.Helper()
	resp, err := http.DefaultClient.Do(mustReq(t, srv, tok, "GET", "/api/v1/reports/compliance"+query))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body strings.Builder
	buf := make([]byte, 32<<10)
	for {
		n, err := resp.Body.Read(buf)
		body.Write(buf[:n])
		if err != nil {
			break
		}
	}
	var out complianceOut
	if resp.StatusCode == http.StatusOK && strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") {
		if err := json.Unmarshal([]byte(body.String()), &out); err != nil {
			t.Fatalf("report: %v", err)
		}
	}
	return resp.StatusCode, out, resp, []byte(body.String())
}

// labelled stores host id's labels, creation and last good backup (age 0:
// never backed up).
func labelled(t *testing.T, st *storage.Store, id, name string, labels map[string]string, created time.Time, age time.Duration) {
	t.Helper()
	enrolledHost(t, st, id)
	if _, err := st.UpdateHost(id, func(h *storage.Host) error {
		h.Name, h.Labels, h.CreatedAt, h.Online, h.LastSeen = name, labels, created, true, time.Now()
		if age > 0 {
			last := &storage.LastBackup{JobID: "job-" + id, Kind: "backup", Status: storage.JobSucceeded, EndedAt: time.Now().Add(-age)}
			h.LastBackup, h.LastJob, h.LastSuccess = last, last, last
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// The compliance report through the real handler and roles: one row per
// (policy with an RPO, host it matches), within or breached and since when,
// the drill and copy fields null; totals count hosts; JSON or a CSV
// download; the dashboard shows the totals once a policy sets an RPO.
func TestComplianceReportJSONAndCSV(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	old := time.Now().Add(-10 * 24 * time.Hour)
	labelled(t, st, "host-w1", "host-w1", map[string]string{"role": "web", "env": "prod"}, old, 2*time.Hour)
	labelled(t, st, "host-w2", `web, "two"`, map[string]string{"role": "web"}, old, 30*time.Hour)
	labelled(t, st, "host-w3", "host-w3", map[string]string{"role": "web"}, old, 0) // never backed up
	labelled(t, st, "host-d1", "host-d1", map[string]string{"role": "db", "env": "prod"}, old, time.Hour)
	labelled(t, st, "host-x", "host-x", nil, old, time.Hour)
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	admin, viewer := "rmt_trust_admin", "rmt_trust_viewer"

	// No policy sets an RPO: an empty report, no totals on the dashboard.
	code, out, _, _ := getCompliance(t, srv, viewer, "")
	if code != http.StatusOK || len(out.Rows) != 0 || out.Totals.Hosts != 0 || out.Totals.NoRPO != 5 {
		t.Fatalf("before any RPO: %d %+v", code, out)
	}
	if _, body := getPageWith(t, srv, viewer, "/"); strings.Contains(body, `id="compliance"`) {
		t.Error("the dashboard shows RPO totals with no policy setting an RPO")
	}

	ids := map[string]string{}
	for _, p := range []struct{ name, body string }{
		{"web", `{"name":"web","selector":{"role":"web"},"repo_id":"repo-1","rpo":"26h","schedules":[{"name":"nightly","kind":"backup","cron":"0 2 * * *","enabled":true,"paths":["/srv"]}]}`},
		{"db", `{"name":"db","selector":{"role":"db"},"repo_id":"repo-1","rpo":"30m","schedules":[]}`},
		{"prod", `{"name":"prod","selector":{"env":"prod"},"repo_id":"repo-1","rpo":"48h","schedules":[]}`},
		{"all", `{"name":"all","selector":{},"repo_id":"repo-1","schedules":[]}`}, // no RPO
	} {
		code, pol := api.do(admin, "POST", "/api/v1/policies", p.body)
		if code != http.StatusCreated {
			t.Fatalf("policy %s: %d %v", p.name, code, pol)
		}
		ids[p.name] = pol["id"].(string)
	}

	if code, _, _, _ := getCompliance(t, srv, "", ""); code != http.StatusUnauthorized {
		t.Errorf("anonymous: %d, want 401", code)
	}
	code, out, _, _ = getCompliance(t, srv, viewer, "")
	if code != http.StatusOK {
		t.Fatalf("report: %d", code)
	}
	// Under an RPO: w1 (web, prod), w2 (web), w3 (web), d1 (db, prod).
	// w2's backup is 30 h old (web: 26 h), d1's an hour (db: 30 min); w3
	// never backed up but came under web just now: within, for now.
	if tt := out.Totals; tt.Hosts != 4 || tt.Within != 2 || tt.Breached != 2 || tt.NoRPO != 1 {
		t.Errorf("totals %+v", tt)
	}
	var got []string
	rows := map[string]map[string]any{}
	for _, r := range out.Rows {
		key := r["policy_name"].(string) + "/" + r["host_id"].(string)
		got = append(got, key)
		rows[key] = r
		for _, f := range []string{"last_drill_at", "drill_ok", "copy_lag"} {
			if v, ok := r[f]; !ok || v != nil {
				t.Errorf("%s: %s = %v (present %v), want null", key, f, v, ok)
			}
		}
		if r["policy_id"] != ids[r["policy_name"].(string)] {
			t.Errorf("%s: policy_id %v", key, r["policy_id"])
		}
	}
	if want := []string{"db/host-d1", "prod/host-d1", "prod/host-w1", "web/host-w1", "web/host-w3", "web/host-w2"}; !slices.Equal(got, want) {
		t.Errorf("rows %v, want %v (by policy, then host name)", got, want)
	}
	w2, _ := st.GetHost("host-w2")
	if r := rows["web/host-w2"]; r["within_rpo"] != false || r["rpo"] != "26h0m0s" || r["host_name"] != `web, "two"` ||
		!sameTime(r["last_success_at"], w2.LastSuccess.EndedAt) || !sameTime(r["breached_since"], w2.LastSuccess.EndedAt.Add(26*time.Hour)) {
		t.Errorf("web/host-w2: %v", r)
	}
	if r := rows["web/host-w1"]; r["within_rpo"] != true || r["breached_since"] != nil {
		t.Errorf("web/host-w1: %v", r)
	}
	if r := rows["web/host-w3"]; r["within_rpo"] != true || r["last_success_at"] != nil {
		t.Errorf("web/host-w3 (never backed up, policy new): %v", r)
	}
	if r := rows["db/host-d1"]; r["within_rpo"] != false || rows["prod/host-d1"]["within_rpo"] != true {
		t.Errorf("host-d1: db %v, prod %v", r, rows["prod/host-d1"])
	}

	// One policy's report.
	code, out, _, _ = getCompliance(t, srv, viewer, "?policy_id="+ids["db"])
	if code != http.StatusOK || len(out.Rows) != 1 || out.Rows[0]["host_id"] != "host-d1" || out.Totals.Hosts != 1 || out.Totals.Breached != 1 {
		t.Errorf("db report: %d %+v", code, out)
	}
	if code, _, _, _ := getCompliance(t, srv, viewer, "?policy_id=pol-gone"); code != http.StatusNotFound {
		t.Errorf("unknown policy: %d, want 404", code)
	}
	if code, _, _, _ := getCompliance(t, srv, viewer, "?format=xml"); code != http.StatusBadRequest {
		t.Errorf("format=xml: %d, want 400", code)
	}

	// CSV: a download with a header line, RFC 4180 quoting.
	code, _, resp, body := getCompliance(t, srv, viewer, "?format=csv")
	if code != http.StatusOK || !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/csv") ||
		!regexp.MustCompile(`^attachment; filename="compliance-[0-9-]+\.csv"$`).MatchString(resp.Header.Get("Content-Disposition")) {
		t.Fatalf("csv: %d %v", code, resp.Header)
	}
	if !strings.Contains(string(body), `"web, ""two"""`) {
		t.Errorf("csv does not quote a name with a comma and quotes:\n%s", body)
	}
	recs, err := csv.NewReader(strings.NewReader(string(body))).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	header := []string{"policy_id", "policy_name", "host_id", "host_name", "last_success_at", "age_s", "rpo", "rpo_s", "within_rpo", "breached_since", "last_drill_at", "drill_ok", "copy_lag"}
	if len(recs) != 7 || !slices.Equal(recs[0], header) {
		t.Fatalf("csv records: %q", recs)
	}
	for _, r := range recs[1:] {
		if r[2] == "host-w2" && r[1] == "web" && (r[3] != `web, "two"` || r[8] != "false" || r[9] == "" || r[10] != "" || r[11] != "" || r[12] != "") {
			t.Errorf("csv web/host-w2: %q", r)
		}
	}

	// The dashboard: 2 of 4 within, with the report's links.
	_, page := getPageWith(t, srv, viewer, "/")
	for _, want := range []string{`<strong id="rpo-within">2</strong> of <strong id="rpo-hosts">4</strong> hosts within RPO`,
		`<strong id="rpo-breached">2</strong> in breach`, `href="/api/v1/reports/compliance"`, `href="/api/v1/reports/compliance?format=csv"`} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %s", want)
		}
	}
}

func sameTime(v any, want time.Time) bool {
	s, ok := v.(string)
	if !ok {
		return false
	}
	got, err := time.Parse(time.RFC3339Nano, s)
	return err == nil && got.Equal(want)
}

// A host under a policy's RPO is judged by it, everywhere at once: as its
// last good backup ages past the RPO the report turns it breached, the
// rpo_breach alert fires (critical; backup_stale does not), and the
// dashboard and metrics show it failing; a new backup brings all back. The
// host backs up weekly, so without the RPO (72 h) it would be fine at 4
// days: the policy's RPO replaces the threshold its schedule gives it.
func TestRPOBreachAgreesInReportAlertsAndDashboard(t *testing.T) {
	c, st, _ := newTestConsole(t, func(o *Options) {
		o.AlertInterval = 20 * time.Millisecond
		o.MetricsRefresh = -1
	})
	withRoles(t, st)
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	labelled(t, st, "host-w", "host-w", map[string]string{"role": "web"}, time.Now().Add(-60*24*time.Hour), 0)
	if _, err := st.UpdateSchedules("host-w", func(hs *storage.HostSchedules) error {
		hs.Version, hs.AppliedVersion = 1, 1
		hs.UpdatedAt = time.Now().Add(-60 * 24 * time.Hour)
		hs.Schedules = []schedules.Schedule{{ID: "sch-w", Name: "weekly", Kind: "backup", Cron: "0 3 * * 0", Enabled: true, RepoID: "repo-1", Paths: []string{"/srv"}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	if code, pol := (caller{t, srv}).do("rmt_trust_admin", "POST", "/api/v1/policies",
		`{"name":"web","selector":{"role":"web"},"repo_id":"repo-1","rpo":"72h","schedules":[]}`); code != http.StatusCreated {
		t.Fatalf("policy: %d %v", code, pol)
	}
	viewer := "rmt_trust_viewer"
	stateRe := regexp.MustCompile(`data-host="host-w" data-state="([a-z]+)"`)
	metricRe := regexp.MustCompile(`restic_manager_hosts\{state="([a-z]+)"\} 1`)
	firing := func(rule string) bool {
		a, err := st.GetAlert(rule + ".host-w")
		return err == nil && a.State == storage.AlertFiring
	}

	for _, tc := range []struct {
		age    time.Duration
		state  string
		breach bool
	}{
		{2 * 24 * time.Hour, "ok", false},     // within 72 h
		{4 * 24 * time.Hour, "failing", true}, // past 72 h: rpo_breach (a weekly schedule alone: still ok)
		{time.Hour, "ok", false},              // a new backup resolves it
	} {
		ended := time.Now().Add(-tc.age)
		last := &storage.LastBackup{JobID: "job-w", Kind: "backup", Status: storage.JobSucceeded, EndedAt: ended}
		if _, err := st.UpdateHost("host-w", func(h *storage.Host) error {
			h.Online, h.LastSeen, h.LastBackup, h.LastJob, h.LastSuccess = true, time.Now(), last, last, last
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		_, out, _, _ := getCompliance(t, srv, viewer, "")
		if len(out.Rows) != 1 || out.Rows[0]["within_rpo"] != !tc.breach || out.Totals.Breached != map[bool]int{true: 1}[tc.breach] {
			t.Errorf("age %s: report %+v", tc.age, out)
		}
		if tc.breach && !sameTime(out.Rows[0]["breached_since"], ended.Add(72*time.Hour)) {
			t.Errorf("age %s: breached_since %v, want %s", tc.age, out.Rows[0]["breached_since"], ended.Add(72*time.Hour))
		}
		// The alert loop runs every 20 ms: wait for the alerts to settle
		// (backup_stale may have fired before the policy came).
		deadline := time.Now().Add(10 * time.Second)
		for firing("rpo_breach") != tc.breach || firing("backup_stale") {
			if time.Now().After(deadline) {
				t.Fatalf("age %s: rpo_breach firing=%v (want %v), backup_stale firing=%v (want false)",
					tc.age, firing("rpo_breach"), tc.breach, firing("backup_stale"))
			}
			time.Sleep(10 * time.Millisecond)
		}
		if a, _ := st.GetAlert("rpo_breach.host-w"); tc.breach && a.Severity != "critical" {
			t.Errorf("age %s: rpo_breach is %s, want critical", tc.age, a.Severity)
		}
		_, body := getPageWith(t, srv, viewer, "/")
		if m := stateRe.FindStringSubmatch(body); m == nil || m[1] != tc.state {
			t.Errorf("age %s: dashboard state %v, want %s", tc.age, m, tc.state)
		}
		within := map[bool]string{false: "1", true: "0"}[tc.breach]
		if !strings.Contains(body, `<strong id="rpo-within">`+within+`</strong> of <strong id="rpo-hosts">1</strong>`) {
			t.Errorf("age %s: dashboard totals, want %s of 1 within", tc.age, within)
		}
		_, metrics := getPageWith(t, srv, "", "/metrics")
		if mm := metricRe.FindStringSubmatch(metrics); mm == nil || mm[1] != tc.state {
			t.Errorf("age %s: metrics count the host as %v, want %s", tc.age, mm, tc.state)
		}
	}
	if a, err := st.GetAlert("rpo_breach.host-w"); err != nil || a.State != storage.AlertResolved {
		t.Errorf("rpo_breach after a new backup: %+v %v", a, err)
	}
}
