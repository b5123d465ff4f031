package console

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
)

// uiFixture is a console with a host, a repository, a schedule, a finished
// backup and a user per role (bearer tokens "rmt_ui_<role>").
func uiFixture(t *testing.T) (*httptest.Server, *storage.Store) {
	t.Helper()
	c, st, _ := newTestConsole(t)
	enrolledHost(t, st, "host-a")
	if _, err := st.UpdateHost("host-a", func(h *storage.Host) error {
		h.Name, h.Online, h.Hostname, h.OS = `web-<1>`, true, "web1", "linux"
		h.LastBackup = &storage.LastBackup{JobID: "job-1", Kind: "backup", Status: storage.JobSucceeded, EndedAt: time.Now().Add(-30 * time.Hour), SnapshotID: "abcdef0123456789"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.UpdateAlert("backup_stale.host-a", func(a *storage.Alert, _ bool) error {
		*a = storage.Alert{Rule: "backup_stale", Subject: "host-a", HostID: "host-a", Severity: "critical", State: storage.AlertFiring,
			Since: time.Now().Add(-time.Hour), Message: "no successful backup of web-<1>"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "main", DisplayURL: "rest:http://x/", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "rest:http://x/", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	_ = st.PutSnapshotCache("repo-1", []byte(`[{"id":"abcdef0123456789","short_id":"abcdef01","time":"2026-01-01T00:00:00Z","hostname":"web1","paths":["/etc"]}]`))
	if _, err := st.UpdateSchedules("host-a", func(hs *storage.HostSchedules) error {
		hs.Version = 1
		hs.Schedules = []schedules.Schedule{{ID: "sch-1", Name: "nightly", Kind: "backup", Cron: "0 2 * * *", Enabled: true, RepoID: "repo-1", Paths: []string{"/etc"}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	if err := st.CreateJob(storage.Job{ID: "job-1", HostID: "host-a", RepoID: "repo-1", Kind: "backup", Status: storage.JobSucceeded, ActorKind: "user", Actor: "admin",
		CreatedAt: now.Add(-time.Minute), StartedAt: now.Add(-time.Minute), EndedAt: now, SnapshotID: "abcdef0123456789",
		Summary: json.RawMessage(`{"data_added":2048,"total_files_processed":3}`), Progress: &storage.Progress{Percent: 100, FilesDone: 3, FilesTotal: 3}}); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		if err := st.CreateUser(storage.User{Name: role + "-user", Role: role, CreatedAt: now}); err != nil {
			t.Fatal(err)
		}
		if err := st.PutAPIToken(token.Hash("rmt_ui_"+role), storage.APIToken{ID: "tok-" + role, Name: role, User: role + "-user"}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateChannel(storage.Channel{ID: "chan-1", Name: "on-<call>", Kind: "webhook", MinSeverity: "warning", CreatedAt: now}, []byte(`{"kind":"webhook","url":"https://x.example"}`)); err != nil {
		t.Fatal(err)
	}
	if err := st.PutIntegrationUser(storage.IntegrationUser{Name: "homeassistant", PasswordHash: token.Hash("pw"), CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAPIToken(token.Hash("rmt_ui_old"), storage.APIToken{ID: "tok-old", Name: "old-ci", User: "operator-user", ExpiresAt: now.Add(-time.Hour), Role: auth.RoleViewer}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	t.Cleanup(srv.Close)
	return srv, st
}

func getPage(t *testing.T, srv *httptest.Server, role, path string) (int, string) {
	t.Helper()
	return getPageWith(t, srv, "rmt_ui_"+role, path)
}

// getPageWith GETs path with a bearer token ("" for none).
func getPageWith(t *testing.T, srv *httptest.Server, tok, path string) (int, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", srv.URL+path, nil)
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// Every page renders completely for every role (a template error stops the
// output early, so the closing tag is the check), escapes what it shows,
// and shows run or edit controls only to roles that may use them.
func TestPagesRenderPerRole(t *testing.T) {
	srv, _ := uiFixture(t)
	controls := []string{`id="run-form"`, `id="schedule-editor"`, `class="small edit-schedule"`, `id="cancel-job"`, `id="nav-restore"`, `id="diff-run"`, `class="small ack-alert"`, `id="unlock-run"`, `id="add-host-form"`}
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		pages := []string{"/", "/?q=web&state=warning&page=1", "/hosts/host-a", "/hosts/host-a?status=failed", "/jobs/job-1", "/repos/repo-1", "/settings", "/alerts"}
		if role != auth.RoleViewer {
			pages = append(pages, "/restore?repo=repo-1")
		}
		for _, p := range pages {
			code, body := getPage(t, srv, role, p)
			if code != 200 || !strings.Contains(body, "</html>") {
				t.Errorf("%s %s: %d, complete=%v", role, p, code, strings.Contains(body, "</html>"))
				continue
			}
			if strings.Contains(body, "web-<1>") {
				t.Errorf("%s %s: host name not escaped", role, p)
			}
			for _, c := range controls {
				if role == auth.RoleViewer && strings.Contains(body, c) {
					t.Errorf("viewer sees %s on %s", c, p)
				}
			}
		}
	}
	if _, body := getPage(t, srv, auth.RoleOperator, "/alerts"); !strings.Contains(body, `class="small ack-alert"`) || !strings.Contains(body, "backup_stale") {
		t.Error("an operator sees no acknowledge control for a firing alert")
	}
	if code, body := getPage(t, srv, auth.RoleViewer, "/restore"); code != http.StatusForbidden || !strings.Contains(body, "role") {
		t.Errorf("viewer /restore: %d", code)
	}
	// Settings: admins manage users, channels and integration accounts;
	// every role makes tokens, with an expiry and at most its own role.
	adminControls := []string{`id="user-form"`, `class="user-role"`, `class="small reset-password"`, `class="small toggle-user"`,
		`class="small danger delete-user"`, `id="password-dialog"`, `class="small danger delete-channel"`, `class="small danger delete-mqtt-user"`}
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		_, body := getPage(t, srv, role, "/settings")
		for _, c := range adminControls {
			if strings.Contains(body, c) != (role == auth.RoleAdmin) {
				t.Errorf("%s on /settings: %s shown %v", role, c, strings.Contains(body, c))
			}
		}
		if !strings.Contains(body, `name="expires_in"`) || !strings.Contains(body, `<option selected>`+role+`</option>`) {
			t.Errorf("%s: the token form lacks the expiry or its own role as the default", role)
		}
	}
	_, body := getPage(t, srv, auth.RoleViewer, "/settings")
	if strings.Contains(body, "<option>operator</option>") || strings.Contains(body, "<option>admin</option>") {
		t.Error("a viewer is offered a token role above its own")
	}
	_, body = getPage(t, srv, auth.RoleOperator, "/settings")
	if strings.Contains(body, "<option>admin</option>") || !strings.Contains(body, "<option>viewer</option>") {
		t.Error("an operator's token roles are wrong")
	}
	if !strings.Contains(body, `data-token="tok-old"`) || !strings.Contains(body, ">expired<") || !strings.Contains(body, "never") {
		t.Error("the token list does not show expiry")
	}
	_, body = getPage(t, srv, auth.RoleAdmin, "/settings")
	for _, want := range []string{`data-user="operator-user"`, `data-channel="chan-1"`, `on-&lt;call&gt;`, `data-mqtt-user="homeassistant"`, `data-name="viewer-user"`} {
		if !strings.Contains(body, want) {
			t.Errorf("admin's settings lack %s", want)
		}
	}
	if strings.Contains(body, "on-<call>") {
		t.Error("a channel name is not escaped")
	}
	if code, body := getPage(t, srv, auth.RoleAdmin, "/hosts/host-nope"); code != 404 || !strings.Contains(body, "does not exist") {
		t.Errorf("unknown host: %d", code)
	}
	// Operators get every control on the host page.
	_, body = getPage(t, srv, auth.RoleOperator, "/hosts/host-a")
	for _, c := range controls[:3] {
		if !strings.Contains(body, c) {
			t.Errorf("operator lacks %s", c)
		}
	}
	// The dashboard: 30 h since the last backup is amber, the host a warning.
	_, body = getPage(t, srv, auth.RoleViewer, "/")
	for _, want := range []string{`class="age-warn"`, `id="count-warning">1<`, `data-state="warning"`, "every day at 02:00"} {
		if want == "every day at 02:00" {
			_, body = getPage(t, srv, auth.RoleViewer, "/hosts/host-a")
		}
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
}

func TestDashboardPagesAndFilters(t *testing.T) {
	srv, st := uiFixture(t)
	for i := range 250 {
		id := "host-b" + strings.Repeat("0", 3-len(itoa(i))) + itoa(i)
		if err := st.CreateHost(storage.Host{ID: id, Name: "bulk-" + itoa(i), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	_, body := getPage(t, srv, auth.RoleViewer, "/")
	if n := strings.Count(body, "<tr data-host="); n != 100 {
		t.Errorf("first page has %d rows, want 100 (the page size)", n)
	}
	for _, want := range []string{`id="count-hosts">251<`, `id="count-offline">250<`, "page 1 of 3", `id="page-next"`} {
		if !strings.Contains(body, want) {
			t.Errorf("dashboard lacks %s", want)
		}
	}
	_, body = getPage(t, srv, auth.RoleViewer, "/?page=3")
	if n := strings.Count(body, "<tr data-host="); n != 51 {
		t.Errorf("last page has %d rows, want 51", n)
	}
	_, body = getPage(t, srv, auth.RoleViewer, "/?q=BULK-12")
	if n := strings.Count(body, "<tr data-host="); n != 11 { // 12, 120-129
		t.Errorf("search has %d rows, want 11", n)
	}
	_, body = getPage(t, srv, auth.RoleViewer, "/?state=warning")
	if n := strings.Count(body, "<tr data-host="); n != 1 || !strings.Contains(body, `data-host="host-a"`) {
		t.Errorf("state filter has %d rows", n)
	}
}

func itoa(i int) string { b, _ := json.Marshal(i); return string(b) }

func TestCronPreview(t *testing.T) {
	srv, _ := uiFixture(t)
	code, body := getPage(t, srv, auth.RoleViewer, "/ui/cron?cron=0+2+*+*+*&timezone=Europe/Berlin")
	var out struct {
		Description string      `json:"description"`
		NextRuns    []time.Time `json:"next_runs"`
	}
	if code != 200 || json.Unmarshal([]byte(body), &out) != nil || len(out.NextRuns) != 5 || !strings.Contains(out.Description, "Europe/Berlin") {
		t.Fatalf("preview: %d %s", code, body)
	}
	if code, body := getPage(t, srv, auth.RoleViewer, "/ui/cron?cron=61+*+*+*+*"); code != 400 || !strings.Contains(body, "error") {
		t.Fatalf("bad cron: %d %s", code, body)
	}
}

// A host whose agent's clock is off shows it on its page.
func TestHostPageShowsClockSkew(t *testing.T) {
	srv, st := uiFixture(t)
	if _, body := getPage(t, srv, auth.RoleViewer, "/hosts/host-a"); strings.Contains(body, `id="clock-warning"`) {
		t.Fatal("a clock warning for a host with no measured skew")
	}
	if _, err := st.UpdateHost("host-a", func(h *storage.Host) error { h.ClockSkew = -5 * time.Minute; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, body := getPage(t, srv, auth.RoleViewer, "/hosts/host-a"); !strings.Contains(body, `id="clock-warning">off by -300 s<`) {
		t.Error("the host page does not show the agent's clock skew")
	}
}

// While a filter is active, an operator gets "Run on these N hosts…" with
// every matching host's ID (all pages, not only the one shown) and the
// repositories to pick; a viewer gets no such control, nor does anyone on
// the unfiltered dashboard.
func TestDashboardBulkRunControl(t *testing.T) {
	srv, st := uiFixture(t)
	for i := range 103 {
		id := fmt.Sprintf("host-web%03d", i)
		enrolledHost(t, st, id)
		if _, err := st.UpdateHost(id, func(h *storage.Host) error { h.Labels = map[string]string{"role": "web"}; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	hostsAttr := regexp.MustCompile(`<details id="bulk-run" data-hosts="([^"]*)" data-count="(\d+)">`)
	for _, role := range []string{auth.RoleOperator, auth.RoleAdmin} {
		_, body := getPage(t, srv, role, "/?label=role=web")
		if !strings.Contains(body, `<summary id="bulk-summary">Run on these 103 hosts…</summary>`) || !strings.Contains(body, `id="bulk-form"`) {
			t.Fatalf("%s on /?label=role=web: no bulk control with the count", role)
		}
		m := hostsAttr.FindStringSubmatch(body)
		if m == nil || m[2] != "103" {
			t.Fatalf("%s: bulk control attributes %v", role, m)
		}
		if ids := strings.Fields(m[1]); len(ids) != 103 || ids[0] != "host-web000" || ids[102] != "host-web102" {
			t.Errorf("%s: bulk control names %d hosts (%v…), want all 103 matching", role, len(ids), ids[:min(len(ids), 2)])
		}
		if !strings.Contains(body, `<select name="repo_id" id="bulk-repo"><option value="repo-1">main</option>`) {
			t.Errorf("%s: the bulk control does not offer the repository", role)
		}
	}
	_, body := getPage(t, srv, auth.RoleOperator, "/?state=warning")
	if !strings.Contains(body, "Run on this host…") || !strings.Contains(body, `data-hosts="host-a"`) {
		t.Error("state filter with one match: no \"Run on this host…\"")
	}
	for _, tc := range []struct{ role, path string }{
		{auth.RoleViewer, "/?label=role=web"},
		{auth.RoleViewer, "/?state=warning"},
		{auth.RoleOperator, "/"},
		{auth.RoleOperator, "/?label=role=db"},  // matches nothing
		{auth.RoleOperator, "/?label=Role=web"}, // a bad filter
	} {
		_, body := getPage(t, srv, tc.role, tc.path)
		if !strings.Contains(body, "</html>") || strings.Contains(body, `id="bulk-run"`) || strings.Contains(body, "Run on these") {
			t.Errorf("%s on %s: bulk control shown (or page incomplete)", tc.role, tc.path)
		}
	}
}
