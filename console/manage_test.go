package console

import (
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/storage"
)

// The repositories, integrations and audit pages: every role reads the
// repositories, only admins get the add form; the integrations and audit
// pages are admins' (a viewer or operator is told so); the nav offers
// each role only what it may open.
func TestManagePagesPerRole(t *testing.T) {
	srv, st := uiFixture(t)
	if err := st.PutChannelDelivery("chan-1", storage.ChannelDelivery{At: time.Now().Add(-time.Minute), OK: false, Event: "test", Error: "webhook: 500 Internal Server Error"}); err != nil {
		t.Fatal(err)
	}
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		admin := role == auth.RoleAdmin
		code, body := getPage(t, srv, role, "/repos")
		if code != 200 || !strings.Contains(body, "</html>") || !strings.Contains(body, `data-repo="repo-1"`) || !strings.Contains(body, `href="/repos/repo-1"`) {
			t.Errorf("%s /repos: %d, row shown %v", role, code, strings.Contains(body, `data-repo="repo-1"`))
		}
		if strings.Contains(body, "web-<1>") {
			t.Errorf("%s /repos: a host name is not escaped", role)
		}
		if strings.Contains(body, `id="repo-form"`) != admin {
			t.Errorf("%s /repos: add form shown %v", role, !admin)
		}
		if !strings.Contains(body, `id="nav-repos"`) || strings.Contains(body, `id="nav-integrations"`) != admin || strings.Contains(body, `id="nav-audit"`) != admin {
			t.Errorf("%s: nav links wrong", role)
		}
		for _, p := range []string{"/integrations", "/audit"} {
			code, body := getPage(t, srv, role, p)
			switch {
			case admin && (code != 200 || !strings.Contains(body, "</html>")):
				t.Errorf("admin %s: %d", p, code)
			case !admin && (code != http.StatusForbidden || !strings.Contains(body, "role cannot open this page")):
				t.Errorf("%s %s: %d, want 403 in words", role, p, code)
			}
		}
	}
	_, body := getPage(t, srv, auth.RoleAdmin, "/integrations")
	for _, want := range []string{`data-channel="chan-1"`, `on-&lt;call&gt;`, `webhook: 500 Internal Server Error`, `data-mqtt-user="homeassistant"`, `id="channel-form"`, `id="mqtt-user-form"`, `id="console-settings"`} {
		if !strings.Contains(body, want) {
			t.Errorf("integrations page lacks %s", want)
		}
	}
	// The channel's sealed settings never reach the page.
	if strings.Contains(body, "x.example") || strings.Contains(body, "on-<call>") {
		t.Error("integrations page shows a channel's settings or an unescaped name")
	}
}

// Each channel's last delivery (a test or an alert) is recorded: GET
// /channels shows it, a failure with its reason and no secret, and it goes
// with the channel.
func TestChannelLastDelivery(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin})
	root := bearer("root")
	hook := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) }))
	defer hook.Close()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	closed := "http://" + ln.Addr().String() + "/hook-token-123"
	ln.Close()

	var good, bad struct{ ID string }
	r := a.as(root, "POST", "/api/v1/channels", `{"name":"good","kind":"webhook","config":{"url":"`+hook.URL+`"}}`)
	a.want(r, 201, "create good")
	r.decode(t, &good)
	r = a.as(root, "POST", "/api/v1/channels", `{"name":"bad","kind":"webhook","config":{"url":"`+closed+`","secret":"hmac-secret-456"}}`)
	a.want(r, 201, "create bad")
	r.decode(t, &bad)
	if r := a.as(root, "GET", "/api/v1/channels", ""); strings.Contains(r.body, "last_delivery") {
		t.Errorf("a delivery before any was sent: %s", r.body)
	}
	a.want(a.as(root, "POST", "/api/v1/channels/"+good.ID+"/test", ""), 200, "test good")
	a.want(a.as(root, "POST", "/api/v1/channels/"+bad.ID+"/test", ""), 502, "test bad")

	var list []struct {
		ID           string
		LastDelivery *struct {
			At    time.Time `json:"at"`
			OK    bool      `json:"ok"`
			Event string    `json:"event"`
			Error string    `json:"error"`
		} `json:"last_delivery"`
	}
	r = a.as(root, "GET", "/api/v1/channels", "")
	r.decode(t, &list)
	got := map[string]int{}
	for i, c := range list {
		got[c.ID] = i
	}
	g, b := list[got[good.ID]].LastDelivery, list[got[bad.ID]].LastDelivery
	if g == nil || !g.OK || g.Event != "test" || g.Error != "" || time.Since(g.At) > time.Minute {
		t.Errorf("good channel's last delivery: %+v", g)
	}
	if b == nil || b.OK || b.Error == "" || b.Event != "test" {
		t.Fatalf("bad channel's last delivery: %+v", b)
	}
	if strings.Contains(r.body, "hook-token-123") || strings.Contains(r.body, "hmac-secret-456") || strings.Contains(r.body, "sealed") {
		t.Errorf("the channel list shows a secret: %s", r.body)
	}
	a.want(a.as(root, "DELETE", "/api/v1/channels/"+bad.ID, ""), 204, "delete bad")
	ds, err := a.st.ChannelDeliveries()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := ds[bad.ID]; ok || len(ds) != 1 {
		t.Errorf("deliveries after deleting a channel: %+v", ds)
	}
}

// GET /audit filters by time (since, until: RFC 3339), with the other
// filters; a bad time or an empty range is refused naming the field.
func TestAuditAPITimeFilter(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin})
	root := bearer("root")
	base := time.Date(2026, 5, 1, 10, 0, 0, 0, time.UTC)
	for i := range 6 {
		if err := a.st.AppendAudit(storage.AuditEntry{At: base.Add(time.Duration(i) * time.Hour), Actor: "carol", Action: "POST /api/v1/x", Target: "/api/v1/x"}); err != nil {
			t.Fatal(err)
		}
	}
	q := url.Values{"actor": {"carol"}, "since": {base.Add(time.Hour).Format(time.RFC3339)}, "until": {base.Add(3 * time.Hour).Format(time.RFC3339)}}
	r := a.as(root, "GET", "/api/v1/audit?"+q.Encode(), "")
	a.want(r, 200, "a time range")
	var es []storage.AuditEntry
	r.decode(t, &es)
	if len(es) != 3 || !es[0].At.Equal(base.Add(3*time.Hour)) || !es[2].At.Equal(base.Add(time.Hour)) {
		t.Errorf("11:00 to 13:00: %d entries %+v", len(es), es)
	}
	q.Set("limit", "2")
	r = a.as(root, "GET", "/api/v1/audit?"+q.Encode(), "")
	if r.hdr.Get("X-Next-Cursor") == "" {
		t.Error("a page of 2 out of 3 gave no cursor")
	}
	r = a.as(root, "GET", "/api/v1/audit?since=yesterday", "")
	if r.code != 400 || !strings.Contains(r.body, `"since: must be a time`) {
		t.Errorf("a bad since: %d %s", r.code, r.body)
	}
	q = url.Values{"since": {base.Format(time.RFC3339)}, "until": {base.Add(-time.Hour).Format(time.RFC3339)}}
	r = a.as(root, "GET", "/api/v1/audit?"+q.Encode(), "")
	if r.code != 400 || !strings.Contains(r.body, `"until: must not be before since"`) {
		t.Errorf("until before since: %d %s", r.code, r.body)
	}
}
