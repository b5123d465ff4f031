package console

import (
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"slices"
	"strings"
	"testing"

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
