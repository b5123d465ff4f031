package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

const (
	tokViewer   = "rmt_trust_viewer"
	tokOperator = "rmt_trust_operator"
	tokAdmin    = "rmt_trust_admin"
)

// keyConsole is a console with the three roles, served over HTTP.
func keyConsole(t *testing.T) (caller, *storage.Store) {
	t.Helper()
	c, st, _ := newTestConsole(t, func(o *Options) { o.EnrollPerMinute = -1 })
	withRoles(t, st)
	srv := httptest.NewServer(c.Handler(nil))
	t.Cleanup(srv.Close)
	return caller{t, srv}, st
}

// newKey creates an enrolment key as the admin and returns its answer.
func newKey(api caller, body string) map[string]any {
	api.t.Helper()
	code, out := api.do(tokAdmin, "POST", "/api/v1/enroll-keys", body)
	if code != http.StatusCreated {
		api.t.Fatalf("create key %s: %d %v", body, code, out)
	}
	return out
}

// listKeys is GET /enroll-keys as the admin.
func listKeys(t *testing.T, api caller) ([]map[string]any, string) {
	t.Helper()
	req, _ := http.NewRequest("GET", api.srv.URL+"/api/v1/enroll-keys", nil)
	req.Header.Set("Authorization", "Bearer "+tokAdmin)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	var out []map[string]any
	if resp.StatusCode != http.StatusOK || json.Unmarshal(buf.Bytes(), &out) != nil {
		t.Fatalf("list keys: %d %s", resp.StatusCode, buf.String())
	}
	return out, buf.String()
}

// enrolment is what an agent answered by POST /enroll got.
type enrolment struct {
	code int
	resp wire.EnrollResponse
	err  string
}

// enrolWith posts an enrolment as an agent does (no login): req gets a
// fresh public key.
func enrolWith(t *testing.T, api caller, req wire.EnrollRequest) enrolment {
	t.Helper()
	_, rcpt, err := seal.NewIdentity()
	if err != nil {
		t.Error(err)
		return enrolment{}
	}
	req.PublicKey = rcpt
	body, _ := json.Marshal(req)
	resp, err := http.Post(api.srv.URL+"/api/v1/enroll", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Error(err)
		return enrolment{}
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	_, _ = buf.ReadFrom(resp.Body)
	e := enrolment{code: resp.StatusCode}
	if resp.StatusCode == http.StatusOK {
		_ = json.Unmarshal(buf.Bytes(), &e.resp)
	} else {
		var m struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(buf.Bytes(), &m)
		e.err = m.Error
	}
	return e
}

func keyUses(t *testing.T, api caller, id string) float64 {
	t.Helper()
	keys, _ := listKeys(t, api)
	for _, k := range keys {
		if k["id"] == id {
			return k["uses"].(float64)
		}
	}
	t.Fatalf("key %s not listed", id)
	return 0
}

// An enrolment key is an admin's to make, list and delete; the key and its
// install lines (pinned as the token's are) are shown once, at creation,
// and a bad request says what is wrong.
func TestEnrollKeysAreAnAdmins(t *testing.T) {
	c, st, _ := newTestConsole(t, func(o *Options) {
		o.CAFingerprint = strings.Repeat("ab", 32)
		o.PublicURL = "https://backup.example.org"
	})
	withRoles(t, st)
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}

	body := `{"name":"web servers","labels":{"role":"web"},"max_uses":5,"expires_in":"720h"}`
	for _, tok := range []string{tokViewer, tokOperator} {
		if code, _ := api.do(tok, "POST", "/api/v1/enroll-keys", body); code != http.StatusForbidden {
			t.Errorf("%s creating a key: %d, want 403", tok, code)
		}
		if code, _ := api.do(tok, "GET", "/api/v1/enroll-keys", ""); code != http.StatusForbidden {
			t.Errorf("%s listing keys: %d, want 403", tok, code)
		}
	}
	out := newKey(api, body)
	key, _ := out["key"].(string)
	id, _ := out["id"].(string)
	if !strings.HasPrefix(key, "rmk_") || len(key) < 40 || !strings.HasPrefix(id, "ekey-") {
		t.Fatalf("key %q id %q", key, id)
	}
	if out["allow_agent_labels"] != true || out["max_uses"] != 5.0 || out["uses"] != 0.0 || out["created_by"] != "admin" {
		t.Errorf("created key: %v", out)
	}
	if exp, _ := time.Parse(time.RFC3339, out["expires_at"].(string)); time.Until(exp) < 719*time.Hour || time.Until(exp) > 720*time.Hour {
		t.Errorf("expires_at %v, want in 720h", out["expires_at"])
	}
	lines, _ := out["install_commands"].(map[string]any)
	linux, _ := lines["linux"].(string)
	windows, _ := lines["windows"].(string)
	if want := "| sudo sh -s -- --server https://backup.example.org --key " + key + " --ca-fingerprint " + strings.Repeat("ab", 32); !strings.HasSuffix(linux, want) {
		t.Errorf("linux line %q, want it to end %q", linux, want)
	}
	if want := "-Server https://backup.example.org -Key " + key + " -CaFingerprint " + strings.Repeat("ab", 32); !strings.HasSuffix(windows, want) {
		t.Errorf("windows line %q, want it to end %q", windows, want)
	}
	if want := "restic-manager-agent enroll --server https://backup.example.org --key " + key + " --ca-fingerprint " + strings.Repeat("ab", 32); out["enroll_command"] != want {
		t.Errorf("enroll_command %q, want %q", out["enroll_command"], want)
	}

	// Listed without the key; the store keeps only its hash.
	keys, raw := listKeys(t, api)
	if len(keys) != 1 || keys[0]["id"] != id || keys[0]["name"] != "web servers" || keys[0]["usable"] != true {
		t.Errorf("list: %s", raw)
	}
	if strings.Contains(raw, key) || strings.Contains(raw, `"key"`) {
		t.Errorf("the list shows the key: %s", raw)
	}
	if _, err := st.GetEnrollKey(token.Hash(key), time.Now()); err != nil {
		t.Errorf("the key is not stored by its hash: %v", err)
	}

	for _, tc := range []struct{ body, want string }{
		{`{"name":"k","max_uses":1}`, "expires_in is required"},
		{`{"name":"k","expires_in":"9000h"}`, "at most 8760h"},
		{`{"name":"k","expires_in":"-1h"}`, "more than 0"},
		{`{"name":"k","expires_in":"soon"}`, "a duration such as"},
		{`{"name":"","expires_in":"1h"}`, "name is required"},
		{`{"name":"k","expires_in":"1h","max_uses":-1}`, "max_uses must be 0"},
		{`{"name":"k","expires_in":"1h","labels":{"Role":"web"}}`, `label key "Role": use 1-63 lower-case letters`},
		{`{"name":"k","expires_in":"1h","labels":{"role":"web server"}}`, "use at most 63 letters, digits"},
		{`{"name":"k","expires_in":"1h","key":"rmk_mine"}`, "unknown field"},
	} {
		code, out := api.do(tokAdmin, "POST", "/api/v1/enroll-keys", tc.body)
		if msg, _ := out["error"].(string); code != http.StatusBadRequest || !strings.Contains(msg, tc.want) {
			t.Errorf("%s: %d %v, want 400 %q", tc.body, code, out, tc.want)
		}
	}

	if code, _ := api.do(tokOperator, "DELETE", "/api/v1/enroll-keys/"+id, ""); code != http.StatusForbidden {
		t.Errorf("operator deleting a key: %d, want 403", code)
	}
	if code, _ := api.do(tokAdmin, "DELETE", "/api/v1/enroll-keys/"+id, ""); code != http.StatusNoContent {
		t.Errorf("admin deleting a key: %d", code)
	}
	if code, _ := api.do(tokAdmin, "DELETE", "/api/v1/enroll-keys/"+id, ""); code != http.StatusNotFound {
		t.Errorf("deleting it again: %d, want 404", code)
	}
}

// An agent with a key makes its own host: named as it asks (else by its
// hostname), with the key's labels and its own (the key's win), a working
// credential, an audit entry naming the key, and the use counted.
func TestEnrollWithKeyMakesLabelledHosts(t *testing.T) {
	api, st := keyConsole(t)
	out := newKey(api, `{"name":"web","labels":{"role":"web","env":"prod"},"expires_in":"1h"}`)
	key, id := out["key"].(string), out["id"].(string)

	e := enrolWith(t, api, wire.EnrollRequest{Key: key, Name: "web-1", Labels: map[string]string{"env": "dev", "site": "berlin"}, Hostname: "web1.example.org", OS: "linux", Arch: "amd64"})
	if e.code != http.StatusOK {
		t.Fatalf("enrol with the key: %d %s", e.code, e.err)
	}
	h, err := st.GetHost(e.resp.HostID)
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"role": "web", "env": "prod", "site": "berlin"}; !maps.Equal(h.Labels, want) {
		t.Errorf("labels %v, want %v (the key's env wins)", h.Labels, want)
	}
	if h.Name != "web-1" || !h.Enrolled || h.Hostname != "web1.example.org" || h.OS != "linux" || !strings.HasPrefix(h.ID, wire.HostIDPrefix) {
		t.Errorf("host %+v", h)
	}
	if !bytes.Equal(h.CredentialHash, token.Hash(e.resp.Password)) || e.resp.Username != h.ID || e.resp.BrokerURL == "" {
		t.Errorf("the credential given is not the host's: %+v", e.resp)
	}
	// The API shows the labels.
	if code, got := api.do(tokViewer, "GET", "/api/v1/hosts/"+h.ID, ""); code != http.StatusOK || fmt.Sprint(got["labels"]) != "map[env:prod role:web site:berlin]" {
		t.Errorf("GET host: %d %v", code, got["labels"])
	}

	// No name: the hostname; no labels: the key's.
	e2 := enrolWith(t, api, wire.EnrollRequest{Key: key, Hostname: "web2.example.org", OS: "windows", Arch: "amd64"})
	h2, err := st.GetHost(e2.resp.HostID)
	if e2.code != http.StatusOK || err != nil || h2.Name != "web2.example.org" || !maps.Equal(h2.Labels, map[string]string{"role": "web", "env": "prod"}) {
		t.Errorf("second host: %d %s %+v %v", e2.code, e2.err, h2, err)
	}
	if n := keyUses(t, api, id); n != 2 {
		t.Errorf("uses %v, want 2", n)
	}

	// The audit log names the key that let each host in.
	entries, _, err := st.ListAudit(storage.AuditQuery{Actor: "agent:" + h.ID})
	if err != nil || len(entries) != 1 || entries[0].Action != "enroll" || !strings.Contains(entries[0].Detail, id) {
		t.Errorf("audit of the enrolment: %+v %v", entries, err)
	}

	// A name and labels come with a key only; a token and a key not both.
	if e := enrolWith(t, api, wire.EnrollRequest{Token: "rme_x", Name: "n"}); e.code != http.StatusBadRequest || !strings.Contains(e.err, "with an enrolment key only") {
		t.Errorf("name with a token: %d %s", e.code, e.err)
	}
	if e := enrolWith(t, api, wire.EnrollRequest{Token: "rme_x", Key: key}); e.code != http.StatusBadRequest || !strings.Contains(e.err, "not both") {
		t.Errorf("token and key: %d %s", e.code, e.err)
	}
	if e := enrolWith(t, api, wire.EnrollRequest{Key: key, Hostname: "h", Labels: map[string]string{"Bad": "x"}}); e.code != http.StatusBadRequest || !strings.Contains(e.err, `label key "Bad"`) {
		t.Errorf("bad labels: %d %s", e.code, e.err)
	}
	if n := keyUses(t, api, id); n != 2 {
		t.Errorf("refused requests counted: uses %v, want 2", n)
	}
}

// A key made with allow_agent_labels false gives its labels only: an agent
// asking for its own is refused (403, nothing counted, no host made).
func TestEnrollKeyForbidsAgentLabels(t *testing.T) {
	api, st := keyConsole(t)
	out := newKey(api, `{"name":"db","labels":{"role":"db"},"expires_in":"1h","allow_agent_labels":false}`)
	key, id := out["key"].(string), out["id"].(string)
	if out["allow_agent_labels"] != false {
		t.Fatalf("allow_agent_labels: %v", out["allow_agent_labels"])
	}
	e := enrolWith(t, api, wire.EnrollRequest{Key: key, Hostname: "db1", Labels: map[string]string{"role": "web"}})
	if e.code != http.StatusForbidden || !strings.Contains(e.err, "gives its own labels only") || !strings.Contains(e.err, "role=db") {
		t.Errorf("agent labels with a key that forbids them: %d %s", e.code, e.err)
	}
	if hosts, _ := st.ListHosts("", 0); len(hosts) != 0 || keyUses(t, api, id) != 0 {
		t.Errorf("a refused enrolment made %d hosts or counted a use", len(hosts))
	}
	e = enrolWith(t, api, wire.EnrollRequest{Key: key, Hostname: "db1"})
	h, err := st.GetHost(e.resp.HostID)
	if e.code != http.StatusOK || err != nil || !maps.Equal(h.Labels, map[string]string{"role": "db"}) {
		t.Errorf("without labels: %d %s %+v %v", e.code, e.err, h, err)
	}
}

// max_uses holds when agents race: of max_uses+5 enrolling at once,
// exactly max_uses get a host, the others are told the key is used up.
func TestEnrollKeyMaxUsesUnderConcurrency(t *testing.T) {
	api, st := keyConsole(t)
	const maxUses = 10
	out := newKey(api, fmt.Sprintf(`{"name":"burst","max_uses":%d,"expires_in":"1h"}`, maxUses))
	key, id := out["key"].(string), out["id"].(string)

	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		codes = map[int]int{}
		hosts = map[string]bool{}
	)
	start := make(chan struct{})
	for i := range maxUses + 5 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			<-start
			e := enrolWith(t, api, wire.EnrollRequest{Key: key, Hostname: fmt.Sprintf("node-%02d", i)})
			mu.Lock()
			defer mu.Unlock()
			codes[e.code]++
			switch e.code {
			case http.StatusOK:
				hosts[e.resp.HostID] = true
			case http.StatusUnauthorized:
				if !strings.Contains(e.err, `the enrolment key "burst" is used up`) {
					t.Errorf("refusal: %s", e.err)
				}
			}
		}()
	}
	close(start)
	wg.Wait()
	if codes[http.StatusOK] != maxUses || codes[http.StatusUnauthorized] != 5 || len(hosts) != maxUses {
		t.Errorf("answers %v, %d distinct hosts; want %d × 200 and 5 × 401", codes, len(hosts), maxUses)
	}
	stored, _ := st.ListHosts("", 0)
	if len(stored) != maxUses || keyUses(t, api, id) != maxUses {
		t.Errorf("%d hosts stored, %v uses; want %d", len(stored), keyUses(t, api, id), maxUses)
	}
	if keys, _ := listKeys(t, api); keys[0]["used_up"] != true || keys[0]["usable"] != false {
		t.Errorf("a used-up key listed as %v", keys[0])
	}
}

// An expired, deleted or unknown key is refused with 401 and says which.
func TestEnrollKeyExpiredDeletedUnknown(t *testing.T) {
	api, st := keyConsole(t)
	now := time.Now()
	if err := st.CreateEnrollKey(token.Hash("rmk_expired"), storage.EnrollKey{ID: "ekey-old", Name: "old", AllowAgentLabels: true,
		CreatedAt: now.Add(-48 * time.Hour), ExpiresAt: now.Add(-time.Hour)}); err != nil {
		t.Fatal(err)
	}
	e := enrolWith(t, api, wire.EnrollRequest{Key: "rmk_expired", Hostname: "h"})
	if e.code != http.StatusUnauthorized || !strings.Contains(e.err, `the enrolment key "old" expired at `) {
		t.Errorf("expired key: %d %s", e.code, e.err)
	}
	if keys, _ := listKeys(t, api); len(keys) != 1 || keys[0]["expired"] != true || keys[0]["usable"] != false {
		t.Errorf("an expired key listed as %v", keys)
	}

	out := newKey(api, `{"name":"gone","expires_in":"1h"}`)
	key, id := out["key"].(string), out["id"].(string)
	if e := enrolWith(t, api, wire.EnrollRequest{Key: key, Hostname: "h1"}); e.code != http.StatusOK {
		t.Fatalf("fresh key: %d %s", e.code, e.err)
	}
	if code, _ := api.do(tokAdmin, "DELETE", "/api/v1/enroll-keys/"+id, ""); code != http.StatusNoContent {
		t.Fatalf("delete: %d", code)
	}
	if e := enrolWith(t, api, wire.EnrollRequest{Key: key, Hostname: "h2"}); e.code != http.StatusUnauthorized || e.err != "the enrolment key is unknown or was deleted" {
		t.Errorf("deleted key: %d %s", e.code, e.err)
	}
	if e := enrolWith(t, api, wire.EnrollRequest{Key: "rmk_never", Hostname: "h3"}); e.code != http.StatusUnauthorized || e.err != "the enrolment key is unknown or was deleted" {
		t.Errorf("unknown key: %d %s", e.code, e.err)
	}
	// The host the deleted key made stays.
	if hosts, _ := st.ListHosts("", 0); len(hosts) != 1 || !hosts[0].Enrolled {
		t.Errorf("hosts after the delete: %+v", hosts)
	}
}

// Enrolments with a key share the enrolment route's per-address limit:
// a key with unlimited uses cannot be turned into a flood of hosts from
// one address.
func TestEnrollKeyRateLimited(t *testing.T) {
	c, st, _ := newTestConsole(t, func(o *Options) { o.EnrollPerMinute = 3 })
	withRoles(t, st)
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	key := newKey(api, `{"name":"unlimited","expires_in":"1h"}`)["key"].(string)
	var codes []int
	for i := range 5 {
		codes = append(codes, enrolWith(t, api, wire.EnrollRequest{Key: key, Hostname: fmt.Sprint("h", i)}).code)
	}
	if fmt.Sprint(codes) != "[200 200 200 429 429]" {
		t.Errorf("answers %v, want three enrolments then 429", codes)
	}
	if hosts, _ := st.ListHosts("", 0); len(hosts) != 3 {
		t.Errorf("%d hosts made, want 3", len(hosts))
	}
}

// The settings page lists enrolment keys and offers the form to make one,
// to admins only; names are escaped. The dashboard's "Add hosts" offers
// the same form, to admins only.
func TestSettingsPageEnrollKeys(t *testing.T) {
	srv, st := uiFixture(t)
	now := time.Now()
	if err := st.CreateEnrollKey(token.Hash("rmk_page"), storage.EnrollKey{ID: "ekey-page", Name: "web <Berlin>", Labels: map[string]string{"role": "web", "site": "berlin"},
		MaxUses: 10, Uses: 3, CreatedBy: "admin-user", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	controls := []string{`id="enroll-key-form"`, `data-enroll-key="ekey-page"`, `class="small danger delete-enroll-key"`}
	for _, role := range []string{"viewer", "operator", "admin"} {
		code, body := getPage(t, srv, role, "/settings")
		if code != http.StatusOK || !strings.Contains(body, "</html>") {
			t.Fatalf("%s /settings: %d", role, code)
		}
		for _, c := range controls {
			if strings.Contains(body, c) != (role == "admin") {
				t.Errorf("%s on /settings: %s shown %v", role, c, strings.Contains(body, c))
			}
		}
		if role == "admin" {
			for _, want := range []string{"web &lt;Berlin&gt;", "<code>role=web</code>", "<code>site=berlin</code>", "3 / 10", "by admin-user", `name="allow_agent_labels"`} {
				if !strings.Contains(body, want) {
					t.Errorf("the admin's settings lack %q", want)
				}
			}
			if strings.Contains(body, "rmk_page") {
				t.Error("the page shows the key")
			}
		}
		code, body = getPage(t, srv, role, "/")
		if code != http.StatusOK {
			t.Fatalf("%s /: %d", role, code)
		}
		if got := strings.Contains(body, `id="enroll-key-form"`); got != (role == "admin") {
			t.Errorf("%s on the dashboard: the enrolment key form shown %v", role, got)
		}
	}
}
