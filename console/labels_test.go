package console

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// apiJSON calls the API with a bearer token and decodes the answer into out.
func apiJSON(t *testing.T, srv *httptest.Server, tok, method, path, body string, out any) int {
	t.Helper()
	req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if out != nil {
		if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
			t.Fatalf("%s %s: %d, answer not JSON: %v", method, path, resp.StatusCode, err)
		}
	}
	return resp.StatusCode
}

type labelledHost struct {
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels"`
}

// An operator sets a host's labels with PATCH /hosts/{id}; GET shows them,
// a PATCH without labels leaves them, {} clears them, a viewer cannot
// change them, and the change is in the audit log.
func TestHostLabelsSetThroughTheAPI(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-a")
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	const op, viewer = "rmt_trust_operator", "rmt_trust_viewer"

	var h labelledHost
	if code := apiJSON(t, srv, op, "GET", "/api/v1/hosts/host-a", "", &h); code != 200 || h.Labels == nil || len(h.Labels) != 0 {
		t.Fatalf("a host without labels: %d %#v, want labels {}", code, h.Labels)
	}
	want := map[string]string{"role": "web", "env": "prod", "site": "berlin"}
	if code := apiJSON(t, srv, op, "PATCH", "/api/v1/hosts/host-a", `{"labels":{"role":"web","env":"prod","site":"berlin"}}`, &h); code != 200 || !maps.Equal(h.Labels, want) {
		t.Fatalf("PATCH labels: %d %v, want %v", code, h.Labels, want)
	}
	h = labelledHost{}
	if apiJSON(t, srv, viewer, "GET", "/api/v1/hosts/host-a", "", &h); !maps.Equal(h.Labels, want) {
		t.Errorf("GET /hosts/host-a: labels %v, want %v", h.Labels, want)
	}
	var list []labelledHost
	if apiJSON(t, srv, viewer, "GET", "/api/v1/hosts", "", &list); len(list) != 1 || !maps.Equal(list[0].Labels, want) {
		t.Errorf("GET /hosts: %+v, want host-a with %v", list, want)
	}

	// A rename leaves the labels; a viewer changes nothing.
	if code := apiJSON(t, srv, op, "PATCH", "/api/v1/hosts/host-a", `{"name":"web-1"}`, &h); code != 200 || h.Name != "web-1" || !maps.Equal(h.Labels, want) {
		t.Errorf("PATCH name: %d %+v, want the labels kept", code, h)
	}
	if code := apiJSON(t, srv, viewer, "PATCH", "/api/v1/hosts/host-a", `{"labels":{}}`, nil); code != http.StatusForbidden {
		t.Errorf("viewer PATCH labels: %d, want 403", code)
	}
	if got, _ := st.GetHost("host-a"); !maps.Equal(got.Labels, want) {
		t.Errorf("stored labels %v after the viewer's PATCH, want %v", got.Labels, want)
	}

	// The whole set is replaced, and {} clears it.
	h = labelledHost{}
	if apiJSON(t, srv, op, "PATCH", "/api/v1/hosts/host-a", `{"labels":{"role":"db"}}`, &h); !maps.Equal(h.Labels, map[string]string{"role": "db"}) {
		t.Errorf("replace: %v, want only role=db", h.Labels)
	}
	h = labelledHost{}
	if code := apiJSON(t, srv, op, "PATCH", "/api/v1/hosts/host-a", `{"labels":{}}`, &h); code != 200 || len(h.Labels) != 0 {
		t.Errorf("clear: %d %v", code, h.Labels)
	}
	if got, _ := st.GetHost("host-a"); got.Labels != nil {
		t.Errorf("stored labels after clearing: %#v, want none", got.Labels)
	}

	entries, _, err := st.ListAudit(storage.AuditQuery{Actor: "operator", Limit: 100})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.ContainsFunc(entries, func(e storage.AuditEntry) bool {
		return e.Action == "PATCH /api/v1/hosts/{id}" && e.Target == "/api/v1/hosts/host-a" && e.Status == 200
	}) {
		t.Errorf("no audit entry for the operator's PATCH: %+v", entries)
	}
}

// Bad labels are refused with the reason, and nothing of the request is
// stored (not even a name given with them).
func TestBadHostLabelsRefused(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-a")
	if _, err := st.UpdateHost("host-a", func(h *storage.Host) error { h.Labels = map[string]string{"role": "web"}; return nil }); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	var many []string
	for i := range 33 {
		many = append(many, `"k`+strings.Repeat("x", i)+`":"v"`)
	}
	for _, tc := range []struct{ body, want string }{
		{`{"name":"renamed","labels":{"Role":"web"}}`, `label key "Role": use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{`{"labels":{"-role":"web"}}`, `label key "-role": use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{`{"labels":{"role":"web server"}}`, `label role: value "web server": use at most 63 letters, digits, '.', '_' or '-'`},
		{`{"labels":{"role":"` + strings.Repeat("w", 64) + `"}}`, `label role: value "` + strings.Repeat("w", 64) + `": use at most 63 letters, digits, '.', '_' or '-'`},
		{`{"labels":{` + strings.Join(many, ",") + `}}`, `at most 32 labels per host (33 given)`},
		{`{"labels":{"role":1}}`, `request body: json: cannot unmarshal number`},
	} {
		var out struct{ Error string }
		code := apiJSON(t, srv, "rmt_trust_operator", "PATCH", "/api/v1/hosts/host-a", tc.body, &out)
		if code != http.StatusBadRequest || !strings.HasPrefix(out.Error, tc.want) {
			t.Errorf("PATCH %.60s: %d %q, want 400 %q", tc.body, code, out.Error, tc.want)
		}
		if strings.HasPrefix(tc.want, "label") && out.Error != tc.want {
			t.Errorf("PATCH %.60s: message %q, want exactly %q", tc.body, out.Error, tc.want)
		}
		h, _ := st.GetHost("host-a")
		if h.Name != "host-a" || !maps.Equal(h.Labels, map[string]string{"role": "web"}) {
			t.Errorf("PATCH %.60s refused, but the host is now %q %v", tc.body, h.Name, h.Labels)
		}
	}
}

// GET /hosts?label=… keeps the hosts that meet every condition:
// key=value, or key alone for "has the key"; pages are filled past the
// hosts that do not match.
func TestListHostsByLabel(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	labels := map[string]map[string]string{
		"host-1": {"role": "web", "env": "prod"},
		"host-2": {"role": "db", "env": "prod"},
		"host-3": nil,
		"host-4": {"role": "web", "env": "dev", "site": "berlin"},
		"host-5": {"role": "web", "env": "prod", "site": ""},
	}
	for id, l := range labels {
		enrolledHost(t, st, id)
		if _, err := st.UpdateHost(id, func(h *storage.Host) error { h.Labels = l; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	ids := func(query string) []string {
		t.Helper()
		var list []labelledHost
		if code := apiJSON(t, srv, "rmt_trust_viewer", "GET", "/api/v1/hosts"+query, "", &list); code != 200 {
			t.Fatalf("GET /hosts%s: %d", query, code)
		}
		out := []string{}
		for _, h := range list {
			out = append(out, h.ID)
		}
		return out
	}
	for _, tc := range []struct {
		query string
		want  []string
	}{
		{"", []string{"host-1", "host-2", "host-3", "host-4", "host-5"}},
		{"?label=role=web", []string{"host-1", "host-4", "host-5"}},
		{"?label=role=web&label=env=prod", []string{"host-1", "host-5"}},
		{"?label=site", []string{"host-4", "host-5"}},
		{"?label=site=", []string{"host-5"}},
		{"?label=role%3Dweb&label=site", []string{"host-4", "host-5"}},
		{"?label=role=cache", []string{}},
		{"?label=role=web&limit=1", []string{"host-1"}},
		{"?label=role=web&limit=1&after=host-1", []string{"host-4"}},
		{"?label=role=web&limit=1&after=host-4", []string{"host-5"}},
		{"?label=role=web&limit=1&after=host-5", []string{}},
	} {
		if got := ids(tc.query); !slices.Equal(got, tc.want) {
			t.Errorf("GET /hosts%s: %v, want %v", tc.query, got, tc.want)
		}
	}
	var out struct{ Error string }
	if code := apiJSON(t, srv, "rmt_trust_viewer", "GET", "/api/v1/hosts?label=Role=web", "", &out); code != 400 ||
		out.Error != `label filter: label key "Role": use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit` {
		t.Errorf("bad filter: %d %q", code, out.Error)
	}
}

// The dashboard shows each host's labels as badges that filter by them,
// filters by ?label= (repeatable, with the search and the state filter),
// keeps the filter in its page links, and still counts the whole fleet.
func TestDashboardLabelFilter(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	set := func(id string, labels map[string]string) {
		t.Helper()
		if _, err := st.UpdateHost(id, func(h *storage.Host) error { h.Labels, h.Online = labels, true; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	// (Online and never backed up: warning.)
	// 101 web hosts in production (two pages of them), a database, a
	// host without labels and a web host not yet enrolled (offline).
	for i := range 101 {
		id := fmt.Sprintf("host-web%03d", i)
		enrolledHost(t, st, id)
		set(id, map[string]string{"role": "web", "env": "prod"})
	}
	enrolledHost(t, st, "host-db")
	set("host-db", map[string]string{"role": "db", "env": "prod", "site": "berlin"})
	enrolledHost(t, st, "host-bare")
	set("host-bare", nil)
	if err := st.CreateHost(storage.Host{ID: "host-new", Name: "new-web", CreatedAt: time.Now(), Labels: map[string]string{"role": "web", "env": "dev"}}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	rows := func(body string) []string {
		var ids []string
		for _, m := range regexp.MustCompile(`<tr data-host="([^"]+)"`).FindAllStringSubmatch(body, -1) {
			ids = append(ids, m[1])
		}
		return ids
	}
	page := func(path string) string {
		t.Helper()
		code, body := getPageWith(t, srv, "rmt_trust_viewer", path)
		if code != 200 || !strings.Contains(body, "</html>") {
			t.Fatalf("%s: %d, complete=%v", path, code, strings.Contains(body, "</html>"))
		}
		if !strings.Contains(body, `<strong id="count-hosts">104</strong>`) {
			t.Errorf("%s: the counts do not cover the whole fleet (104 hosts)", path)
		}
		return body
	}

	// Unfiltered: the database's labels are badges, in key order, each a
	// link to the dashboard filtered by it.
	body := page("/")
	for _, b := range []string{
		`<a href="/?label=env%3Dprod" class="badge label" data-label="env=prod"`,
		`<a href="/?label=role%3Ddb" class="badge label" data-label="role=db"`,
		`<a href="/?label=site%3Dberlin" class="badge label" data-label="site=berlin"`,
	} {
		if !strings.Contains(body, b) {
			t.Errorf("dashboard: no badge %s", b)
		}
	}
	if i, j := strings.Index(body, `data-label="env=prod"`), strings.Index(body, `data-label="site=berlin"`); i < 0 || j < i {
		t.Error("labels not in key order")
	}

	for _, tc := range []struct {
		path string
		want []string // nil: any 100 web hosts, checked by count
		n    int
	}{
		{"/?label=role=db", []string{"host-db"}, 1},
		{"/?label=site", []string{"host-db"}, 1},
		{"/?label=env=prod&label=role=db", []string{"host-db"}, 1},
		{"/?label=role=web&label=env=dev", []string{"host-new"}, 1},
		{"/?label=role=web&state=offline", []string{"host-new"}, 1},
		{"/?label=role=web&q=web050", []string{"host-web050"}, 1},
		{"/?label=role=db&q=web050", nil, 0},
		{"/?label=role=web", nil, 100},
		{"/?label=role=web&page=2", []string{"host-web099", "host-web100"}, 2},
		{"/?label=role=web&label=", nil, 100},
	} {
		body := page(tc.path)
		got := rows(body)
		if len(got) != tc.n || (tc.want != nil && !slices.Equal(got, tc.want)) {
			t.Errorf("%s: rows %v, want %d %v", tc.path, got, tc.n, tc.want)
		}
		if tc.n == 0 && !strings.Contains(body, "No host matches this filter.") {
			t.Errorf("%s: no word that the filter matches nothing", tc.path)
		}
	}

	// Filtered by role=web: 102 hosts on two pages; the page link, the
	// filter form and a badge keep the filter; the filter's terms link to
	// the dashboard without them.
	body = page("/?label=role=web")
	for _, want := range []string{
		`<span id="page-info">page 1 of 2 · 102 hosts</span>`,
		`<a href="/?label=role%3Dweb&amp;page=2" rel="next" id="page-next">`,
		`<input type="hidden" name="label" value="role=web">`,
		`<a href="/?label=role%3Dweb&amp;label=env%3Dprod" class="badge label" data-label="env=prod"`,
		`<a href="/?label=role%3Dweb" class="badge label" data-label="role=web"`,
		`<a href="/" class="badge label sel" data-label="role=web"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/?label=role=web: missing %s", want)
		}
	}
	body = page("/?q=web&state=warning&label=role=web&label=env=prod")
	for _, want := range []string{
		`<a href="/?label=env%3Dprod&amp;q=web&amp;state=warning" class="badge label sel" data-label="role=web"`,
		`<a href="/?label=role%3Dweb&amp;label=env%3Dprod&amp;page=2&amp;q=web&amp;state=warning" rel="next"`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("combined filter: missing %s", want)
		}
	}

	// A bad filter is explained and matches nothing.
	body = page("/?label=Role=web")
	if got := rows(body); len(got) != 0 || !strings.Contains(body, `id="label-filter-error">label key &#34;Role&#34;: use 1-63`) {
		t.Errorf("bad filter: rows %v, error shown %v", got, strings.Contains(body, "label-filter-error"))
	}
}

// The host page lists the labels (links to the dashboard filtered by
// each) for everyone; only operators get the editor, filled with the set.
func TestHostPageLabels(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-a")
	if _, err := st.UpdateHost("host-a", func(h *storage.Host) error {
		h.Labels = map[string]string{"role": "web", "env": "prod"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	enrolledHost(t, st, "host-b")
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	for _, role := range []string{"viewer", "operator", "admin"} {
		code, body := getPageWith(t, srv, "rmt_trust_"+role, "/hosts/host-a")
		if code != 200 || !strings.Contains(body, "</html>") {
			t.Fatalf("%s: host page %d", role, code)
		}
		for _, want := range []string{
			`<dd id="labels"><a href="/?label=env%3Dprod" class="badge label" data-label="env=prod"`,
			`<a href="/?label=role%3Dweb" class="badge label" data-label="role=web"`,
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s: host page lacks %s", role, want)
			}
		}
		editor := strings.Contains(body, `id="labels-form"`)
		if editor != (role != "viewer") {
			t.Errorf("%s: labels editor shown %v", role, editor)
		}
		if editor && !strings.Contains(body, ">env=prod\nrole=web\n</textarea>") {
			t.Errorf("%s: the editor does not hold the labels", role)
		}
	}
	if _, body := getPageWith(t, srv, "rmt_trust_viewer", "/hosts/host-b"); !strings.Contains(body, `<dd id="labels">none</dd>`) {
		t.Error("a host without labels does not say none")
	}
}
