package console

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// accounts is a console with users that log in with passwords ("pw-" and
// the name, twelve characters or more) and bearer tokens ("rmt_acc_" and
// the name). Requests go through the console's real handler; each carries
// a remote address, so the login lock-out sees where it comes from.
type accounts struct {
	t   *testing.T
	c   *Console
	st  *storage.Store
	h   http.Handler
	pub *disconnectRecorder
}

// disconnectRecorder is a publisher that can drop a user's connections, as
// the embedded broker can.
type disconnectRecorder struct {
	teststore.Recorder
	mu    sync.Mutex
	users []string
}

func (d *disconnectRecorder) DisconnectUser(name string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.users = append(d.users, name)
}

func newAccounts(t *testing.T, users map[string]string) *accounts {
	t.Helper()
	pub := &disconnectRecorder{}
	c, st, _ := newTestConsole(t, func(o *Options) { o.Publisher = pub })
	a := &accounts{t: t, c: c, st: st, h: c.Handler(nil), pub: pub}
	for name, role := range users {
		a.addUser(name, role)
	}
	return a
}

func (a *accounts) addUser(name, role string) {
	a.t.Helper()
	hash, _ := auth.HashPassword("pw-" + name + "-long-enough")
	if err := a.st.CreateUser(storage.User{Name: name, PasswordHash: hash, Role: role, CreatedAt: time.Now()}); err != nil {
		a.t.Fatal(err)
	}
	if err := a.st.PutAPIToken(token.Hash("rmt_acc_"+name), storage.APIToken{ID: "tok-" + name, Name: name, User: name}); err != nil {
		a.t.Fatal(err)
	}
}

func password(name string) string { return "pw-" + name + "-long-enough" }

// cred is how a request authenticates: a bearer token or a session cookie.
type cred struct {
	bearer string
	cookie *http.Cookie
}

func bearer(name string) cred { return cred{bearer: "rmt_acc_" + name} }

type answer struct {
	code int
	body string
	hdr  http.Header
}

func (r answer) decode(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal([]byte(r.body), v); err != nil {
		t.Fatalf("answer %d %q: %v", r.code, r.body, err)
	}
}

func (a *accounts) do(method, path, body string, c cred, remote string) answer {
	a.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req := httptest.NewRequest(method, path, rd)
	req.RemoteAddr = remote
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.bearer != "" {
		req.Header.Set("Authorization", "Bearer "+c.bearer)
	}
	if c.cookie != nil {
		req.AddCookie(c.cookie)
	}
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	return answer{rec.Code, rec.Body.String(), rec.Header()}
}

// as calls path as c from one fixed address.
func (a *accounts) as(c cred, method, path, body string) answer {
	a.t.Helper()
	return a.do(method, path, body, c, "192.0.2.1:40000")
}

// login posts a login from remote and returns the answer and its session.
func (a *accounts) login(name, pw, remote string) (answer, cred) {
	a.t.Helper()
	b, _ := json.Marshal(map[string]string{"username": name, "password": pw})
	req := httptest.NewRequest("POST", "/api/v1/login", strings.NewReader(string(b)))
	req.RemoteAddr = remote
	req.Header.Set("Content-Type", "application/json")
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	var c cred
	for _, ck := range rec.Result().Cookies() {
		if ck.Name == "rm_session" && ck.Value != "" {
			c.cookie = ck
		}
	}
	return answer{rec.Code, rec.Body.String(), rec.Header()}, c
}

func (a *accounts) mustLogin(name, pw string) cred {
	a.t.Helper()
	r, c := a.login(name, pw, "192.0.2.1:40000")
	if r.code != http.StatusOK || c.cookie == nil {
		a.t.Fatalf("login %s: %d %s", name, r.code, r.body)
	}
	return c
}

func (a *accounts) want(r answer, code int, what string) {
	a.t.Helper()
	if r.code != code {
		a.t.Fatalf("%s: %d %s, want %d", what, r.code, r.body, code)
	}
}

// A new password or role ends the user's browser sessions; the old
// password no longer logs in; the answer is the changed user; every change
// is audited.
func TestUserChangeEndsSessions(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin, "ann": auth.RoleOperator})
	sess := a.mustLogin("ann", password("ann"))
	a.want(a.as(sess, "GET", "/api/v1/hosts", ""), 200, "ann's session before")

	r := a.as(bearer("root"), "PATCH", "/api/v1/users/ann", `{"password":"a-new-password-1"}`)
	a.want(r, 200, "password change")
	a.want(a.as(sess, "GET", "/api/v1/hosts", ""), 401, "ann's session after her password changed")
	if r, _ := a.login("ann", password("ann"), "192.0.2.1:40000"); r.code != 401 {
		t.Fatalf("the old password: %d", r.code)
	}
	sess = a.mustLogin("ann", "a-new-password-1")

	r = a.as(bearer("root"), "PATCH", "/api/v1/users/ann", `{"role":"viewer"}`)
	a.want(r, 200, "role change")
	var u struct {
		Name, Role string
		Disabled   bool
	}
	r.decode(t, &u)
	if u.Name != "ann" || u.Role != auth.RoleViewer || u.Disabled {
		t.Fatalf("the answer: %+v", u)
	}
	a.want(a.as(sess, "GET", "/api/v1/hosts", ""), 401, "ann's session after her role changed")
	sess = a.mustLogin("ann", "a-new-password-1")
	a.want(a.as(sess, "POST", "/api/v1/hosts", `{"name":"x"}`), 403, "a viewer creating a host")

	// Refusals: bad role, short password, nothing to change, no such user.
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/ann", `{"role":"root"}`), 400, "an unknown role")
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/ann", `{"password":"short"}`), 400, "a short password")
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/ann", `{}`), 400, "an empty change")
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/nobody", `{"role":"viewer"}`), 404, "an unknown user")
	a.want(a.as(bearer("ann"), "PATCH", "/api/v1/users/ann", `{"role":"admin"}`), 403, "a viewer promoting herself")

	entries, _, _ := a.st.ListAudit(storage.AuditQuery{Actor: "root"})
	n := 0
	for _, e := range entries {
		if e.Action == "PATCH /api/v1/users/{name}" && e.Target == "/api/v1/users/ann" {
			n++
		}
	}
	if n != 5 { // two changes, three refusals
		t.Errorf("%d audited changes of ann by root, want 5", n)
	}
}

// A disabled user cannot log in, nor use its sessions or tokens; enabled
// again, its tokens work again (disabling does not revoke them).
func TestDisabledUserLocksOut(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin, "ann": auth.RoleOperator})
	sess := a.mustLogin("ann", password("ann"))
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/ann", `{"disabled":true}`), 200, "disable")
	a.want(a.as(sess, "GET", "/api/v1/hosts", ""), 401, "a disabled user's session")
	a.want(a.as(bearer("ann"), "GET", "/api/v1/hosts", ""), 401, "a disabled user's token")
	r, c := a.login("ann", password("ann"), "192.0.2.1:40000")
	if r.code != http.StatusForbidden || c.cookie != nil || !strings.Contains(r.body, "disabled") {
		t.Fatalf("a disabled user's login: %d %s", r.code, r.body)
	}
	if r, _ := a.login("ann", "wrong-password", "192.0.2.1:40000"); r.code != 401 || strings.Contains(r.body, "disabled") {
		t.Fatalf("a wrong password tells the account is disabled: %d %s", r.code, r.body)
	}
	users := a.as(bearer("root"), "GET", "/api/v1/users", "")
	if !strings.Contains(users.body, `"name":"ann","role":"operator","disabled":true`) {
		t.Errorf("the user list does not show ann disabled: %s", users.body)
	}
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/ann", `{"disabled":false}`), 200, "enable")
	a.want(a.as(bearer("ann"), "GET", "/api/v1/hosts", ""), 200, "an enabled user's token")
	a.mustLogin("ann", password("ann"))
}

// Deleting a user ends its sessions and revokes its tokens: a new user of
// the same name does not inherit them.
func TestDeleteUserEndsSessionsAndRevokesTokens(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin, "ann": auth.RoleOperator})
	sess := a.mustLogin("ann", password("ann"))
	a.want(a.as(bearer("root"), "DELETE", "/api/v1/users/ann", ""), 204, "delete")
	a.want(a.as(sess, "GET", "/api/v1/hosts", ""), 401, "a deleted user's session")
	a.want(a.as(bearer("ann"), "GET", "/api/v1/hosts", ""), 401, "a deleted user's token")
	if toks := a.as(bearer("root"), "GET", "/api/v1/tokens", ""); strings.Contains(toks.body, `"user":"ann"`) {
		t.Errorf("a deleted user's token is still listed: %s", toks.body)
	}
	a.want(a.as(bearer("root"), "POST", "/api/v1/users", `{"name":"ann","password":"another-password","role":"admin"}`), 201, "a new ann")
	a.want(a.as(bearer("ann"), "GET", "/api/v1/hosts", ""), 401, "the old ann's token for the new ann")
	a.want(a.as(sess, "GET", "/api/v1/hosts", ""), 401, "the old ann's session for the new ann")
	a.want(a.as(bearer("root"), "DELETE", "/api/v1/users/nobody", ""), 404, "an unknown user")
}

// The last enabled admin cannot be demoted, disabled or removed (409 with
// the reason); a disabled admin does not count; with a second admin it can.
func TestLastAdminProtected(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin, "old": auth.RoleAdmin})
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/old", `{"disabled":true}`), 200, "disable the other admin")
	for _, tc := range []struct{ method, body string }{
		{"PATCH", `{"role":"operator"}`},
		{"PATCH", `{"disabled":true}`},
		{"PATCH", `{"role":"viewer","password":"a-new-password-1"}`},
		{"DELETE", ""},
	} {
		r := a.as(bearer("root"), tc.method, "/api/v1/users/root", tc.body)
		if r.code != http.StatusConflict || !strings.Contains(r.body, "last enabled admin") {
			t.Errorf("%s %s of the last admin: %d %s, want 409", tc.method, tc.body, r.code, r.body)
		}
	}
	if u, _ := a.st.GetUser("root"); u.Role != auth.RoleAdmin || u.Disabled || !strings.Contains(u.PasswordHash, "argon2id") {
		t.Fatalf("a refused change was stored: %+v", u)
	}
	a.mustLogin("root", password("root")) // the password did not change either
	// A disabled admin may go, and a second admin makes the first one free.
	a.want(a.as(bearer("root"), "DELETE", "/api/v1/users/old", ""), 204, "delete a disabled admin")
	a.want(a.as(bearer("root"), "POST", "/api/v1/users", `{"name":"second","password":"second-password","role":"admin"}`), 201, "a second admin")
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/root", `{"role":"operator"}`), 200, "demote with a second admin")
	a.want(a.as(bearer("root"), "GET", "/api/v1/users", ""), 403, "the demoted admin's token")
}

// Tokens expire (default 90 days, "0" never); a token acts with at most its
// maker's role, and with at most its user's current role.
func TestTokenExpiryAndRole(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin, "boss": auth.RoleAdmin, "vic": auth.RoleViewer})
	type made struct {
		ID, Name, Token, Role string
		ExpiresAt             time.Time `json:"expires_at"`
	}
	mint := func(c cred, body string, code int) made {
		t.Helper()
		r := a.as(c, "POST", "/api/v1/tokens", body)
		a.want(r, code, "POST /tokens "+body)
		var m made
		if code == http.StatusCreated {
			r.decode(t, &m)
		}
		return m
	}
	now := time.Now()
	m := mint(bearer("root"), `{"name":"ci"}`, 201)
	if d := m.ExpiresAt.Sub(now); d < 90*24*time.Hour-time.Minute || d > 90*24*time.Hour+time.Minute || m.Role != auth.RoleAdmin {
		t.Errorf("default token: expires in %v, role %q", d, m.Role)
	}
	if m = mint(bearer("root"), `{"name":"ci","expires_in":"720h"}`, 201); m.ExpiresAt.Sub(now).Round(time.Hour) != 720*time.Hour {
		t.Errorf("720h token expires at %v", m.ExpiresAt)
	}
	if m = mint(bearer("root"), `{"name":"forever","expires_in":"0"}`, 201); !m.ExpiresAt.IsZero() {
		t.Errorf("a token for ever expires at %v", m.ExpiresAt)
	}
	mint(bearer("root"), `{"name":"ci","expires_in":"-1h"}`, 400)
	mint(bearer("root"), `{"name":"ci","expires_in":"soon"}`, 400)
	mint(bearer("root"), `{"name":"`+strings.Repeat("n", auth.MaxNameLen+1)+`"}`, 400)
	mint(bearer("root"), `{"name":"ci","role":"root"}`, 400)

	// An expired token stops authenticating; listed, it says so.
	if err := a.st.PutAPIToken(token.Hash("rmt_expired"), storage.APIToken{ID: "tok-exp", Name: "old", User: "root", ExpiresAt: now.Add(-time.Minute)}); err != nil {
		t.Fatal(err)
	}
	a.want(a.as(cred{bearer: "rmt_expired"}, "GET", "/api/v1/hosts", ""), 401, "an expired token")
	var listed []struct {
		ID, Role  string
		ExpiresAt time.Time `json:"expires_at"`
		Expired   bool
	}
	a.as(bearer("root"), "GET", "/api/v1/tokens", "").decode(t, &listed)
	found := false
	for _, l := range listed {
		if l.ID == "tok-exp" {
			found = l.Expired && !l.ExpiresAt.IsZero() && l.Role == auth.RoleAdmin
		}
	}
	if !found {
		t.Errorf("the expired token is not listed as expired: %+v", listed)
	}

	// A viewer cannot mint an operator token; its own role it may.
	mint(bearer("vic"), `{"name":"x","role":"operator"}`, 403)
	if m = mint(bearer("vic"), `{"name":"x"}`, 201); m.Role != auth.RoleViewer {
		t.Errorf("a viewer's default token role %q", m.Role)
	}
	// An admin's operator token runs the fleet but not admin routes, and
	// cannot mint itself an admin token.
	op := mint(bearer("root"), `{"name":"ops","role":"operator"}`, 201)
	a.want(a.as(cred{bearer: op.Token}, "POST", "/api/v1/hosts", `{"name":"web"}`), 201, "an operator token creating a host")
	a.want(a.as(cred{bearer: op.Token}, "GET", "/api/v1/users", ""), 403, "an operator token of an admin listing users")
	a.want(a.as(cred{bearer: op.Token}, "DELETE", "/api/v1/users/vic", ""), 403, "an operator token of an admin deleting a user")
	mint(cred{bearer: op.Token}, `{"name":"up","role":"admin"}`, 403)
	if m = mint(cred{bearer: op.Token}, `{"name":"same"}`, 201); m.Role != auth.RoleOperator {
		t.Errorf("a token minted by an operator token has role %q", m.Role)
	}
	// A token of an admin who is demoted acts with the user's new role.
	boss := mint(bearer("boss"), `{"name":"boss-admin","role":"admin"}`, 201)
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/boss", `{"role":"viewer"}`), 200, "demote boss")
	a.want(a.as(cred{bearer: boss.Token}, "GET", "/api/v1/users", ""), 403, "a demoted admin's admin token")
	a.want(a.as(cred{bearer: boss.Token}, "GET", "/api/v1/hosts", ""), 200, "a demoted admin's admin token reading")

	// The list shows when each token was last used: the operator token
	// just now, a token never presented not at all.
	var uses []struct {
		ID         string
		LastUsedAt time.Time `json:"last_used_at"`
	}
	unused := mint(bearer("root"), `{"name":"unused"}`, 201)
	a.as(bearer("root"), "GET", "/api/v1/tokens", "").decode(t, &uses)
	seen := 0
	for _, u := range uses {
		switch u.ID {
		case op.ID:
			seen++
			if time.Since(u.LastUsedAt) > time.Minute {
				t.Errorf("the operator token's last use: %v", u.LastUsedAt)
			}
		case unused.ID:
			seen++
			if !u.LastUsedAt.IsZero() {
				t.Errorf("an unused token's last use: %v", u.LastUsedAt)
			}
		}
	}
	if seen != 2 {
		t.Errorf("tokens listed: %+v", uses)
	}
}

// Channels can be renamed, re-routed, given a new configuration and
// deleted; the kind stays.
func TestChannelPatchAndDelete(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin})
	root := bearer("root")
	r := a.as(root, "POST", "/api/v1/channels", `{"name":"ops","kind":"webhook","config":{"url":"https://hooks.example.com/a","secret":"s1"}}`)
	a.want(r, 201, "create")
	var ch struct{ ID, Name, Kind, MinSeverity string }
	r.decode(t, &ch)
	config := func() map[string]any {
		t.Helper()
		raw, err := a.st.ChannelConfig(ch.ID)
		if err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		_ = json.Unmarshal(raw, &m)
		return m
	}

	r = a.as(root, "PATCH", "/api/v1/channels/"+ch.ID, `{"name":"oncall","min_severity":"critical"}`)
	a.want(r, 200, "rename and re-route")
	if !strings.Contains(r.body, `"name":"oncall"`) || !strings.Contains(r.body, `"min_severity":"critical"`) || strings.Contains(r.body, "sealed") {
		t.Errorf("patched channel: %s", r.body)
	}
	if c := config(); c["min_severity"] != "critical" || c["url"] != "https://hooks.example.com/a" || c["secret"] != "s1" {
		t.Errorf("config after re-routing: %v", c)
	}
	a.want(a.as(root, "PATCH", "/api/v1/channels/"+ch.ID, `{"config":{"url":"https://hooks.example.com/b"}}`), 200, "replace the config")
	if c := config(); c["url"] != "https://hooks.example.com/b" || c["secret"] != nil || c["min_severity"] != "critical" || c["kind"] != "webhook" {
		t.Errorf("config after replacing it: %v", c)
	}
	a.want(a.as(root, "PATCH", "/api/v1/channels/"+ch.ID, `{"config":{"kind":"email","smtp_host":"mx"}}`), 400, "change the kind")
	a.want(a.as(root, "PATCH", "/api/v1/channels/"+ch.ID, `{"config":{"url":"ftp://x"}}`), 400, "a bad config")
	a.want(a.as(root, "PATCH", "/api/v1/channels/"+ch.ID, `{"min_severity":"loud"}`), 400, "a bad severity")
	a.want(a.as(root, "PATCH", "/api/v1/channels/"+ch.ID, `{"name":"`+strings.Repeat("n", 201)+`"}`), 400, "a long name")
	a.want(a.as(root, "POST", "/api/v1/channels", `{"name":"`+strings.Repeat("n", 201)+`","kind":"webhook","config":{"url":"https://x.example"}}`), 400, "create with a long name")
	a.want(a.as(root, "PATCH", "/api/v1/channels/chan-nope", `{"name":"x"}`), 404, "an unknown channel")

	a.want(a.as(root, "DELETE", "/api/v1/channels/"+ch.ID, ""), 204, "delete")
	if r := a.as(root, "GET", "/api/v1/channels", ""); strings.TrimSpace(r.body) != "[]" {
		t.Errorf("channels after delete: %s", r.body)
	}
	a.want(a.as(root, "DELETE", "/api/v1/channels/"+ch.ID, ""), 404, "delete again")
}

// An integration's MQTT account is listed without its hashes and, deleted,
// stops authenticating at once and loses its live connection.
func TestMQTTUserListAndDelete(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin})
	root := bearer("root")
	r := a.as(root, "POST", "/api/v1/mqtt-users", `{"name":"homeassistant"}`)
	a.want(r, 201, "create")
	var made struct{ Name, Password string }
	r.decode(t, &made)
	if !a.c.AuthenticateIntegration("homeassistant", []byte(made.Password)) {
		t.Fatal("the new account does not authenticate")
	}
	r = a.as(root, "GET", "/api/v1/mqtt-users", "")
	var listed []map[string]any
	r.decode(t, &listed)
	if len(listed) != 1 || listed[0]["name"] != "homeassistant" || listed[0]["created_at"] == nil || len(listed[0]) != 2 {
		t.Errorf("listed: %s", r.body)
	}
	a.want(a.as(root, "DELETE", "/api/v1/mqtt-users/homeassistant", ""), 204, "delete")
	if a.c.AuthenticateIntegration("homeassistant", []byte(made.Password)) {
		t.Error("a deleted account still authenticates")
	}
	if a.pub.users == nil || a.pub.users[0] != "homeassistant" {
		t.Errorf("connections dropped for %v, want homeassistant's", a.pub.users)
	}
	a.want(a.as(root, "DELETE", "/api/v1/mqtt-users/homeassistant", ""), 404, "delete again")
	if r := a.as(root, "GET", "/api/v1/mqtt-users", ""); strings.TrimSpace(r.body) != "[]" {
		t.Errorf("after delete: %s", r.body)
	}
}

// Guessing admin's password from one address locks that address out, not
// the admin logging in from another.
func TestLoginLockOutPerAddress(t *testing.T) {
	a := newAccounts(t, map[string]string{"admin": auth.RoleAdmin})
	for i := range 5 {
		if r, _ := a.login("admin", "guess", "203.0.113.9:5000"); r.code != 401 {
			t.Fatalf("guess %d: %d", i, r.code)
		}
	}
	if r, _ := a.login("admin", password("admin"), "203.0.113.9:5001"); r.code != http.StatusTooManyRequests {
		t.Fatalf("the right password from the guessing address: %d, want 429", r.code)
	}
	if r, c := a.login("admin", password("admin"), "192.0.2.44:6000"); r.code != 200 || c.cookie == nil {
		t.Fatalf("the admin from another address: %d %s", r.code, r.body)
	}
}

// A huge user name at login is refused and recorded short; its body stays
// within the API's limit.
func TestHugeLoginNameBounded(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin})
	huge := strings.Repeat("x", 1<<20-100)
	for range 6 {
		if r, _ := a.login(huge, "pw", "203.0.113.9:5000"); r.code != 401 {
			t.Fatalf("a huge name: %d", r.code)
		}
	}
	if r, _ := a.login(strings.Repeat("x", 1<<20), "pw", "203.0.113.9:5000"); r.code != 400 {
		t.Fatalf("a name over the body limit: %d", r.code)
	}
	entries, _, _ := a.st.ListAudit(storage.AuditQuery{})
	if len(entries) == 0 {
		t.Fatal("the attempts were not audited")
	}
	for _, e := range entries {
		if len(e.Actor) > storage.MaxAuditField || len(e.Target) > storage.MaxAuditField || len(e.Detail) > storage.MaxAuditDetail {
			t.Errorf("audit entry of %d+%d+%d bytes", len(e.Actor), len(e.Target), len(e.Detail))
		}
	}
	// The form login too (its body limit is 64 KiB).
	req := httptest.NewRequest("POST", "/login", strings.NewReader("username="+strings.Repeat("y", 60<<10)+"&password=x"))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = "203.0.113.10:1"
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	if rec.Code != 401 {
		t.Fatalf("the form with a long name: %d", rec.Code)
	}
	entries, _, _ = a.st.ListAudit(storage.AuditQuery{})
	for _, e := range entries {
		if len(e.Actor) > storage.MaxAuditField {
			t.Errorf("audit actor of %d bytes", len(e.Actor))
		}
	}
}

// The login form says a disabled account is disabled (to whoever knows its
// password) and refuses it.
func TestFormLoginOfDisabledUser(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin, "ann": auth.RoleOperator})
	a.want(a.as(bearer("root"), "PATCH", "/api/v1/users/ann", `{"disabled":true}`), 200, "disable")
	req := httptest.NewRequest("POST", "/login", strings.NewReader("username=ann&password="+password("ann")))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.RemoteAddr = "192.0.2.1:1"
	rec := httptest.NewRecorder()
	a.h.ServeHTTP(rec, req)
	if rec.Code != http.StatusForbidden || !strings.Contains(rec.Body.String(), "disabled") || len(rec.Result().Cookies()) != 0 {
		t.Fatalf("form login of a disabled user: %d", rec.Code)
	}
}

// An enrolment request with over-long strings is refused before its token
// is spent: the same token then enrols with a sane request.
func TestEnrolRequestBounded(t *testing.T) {
	a := newAccounts(t, nil)
	if err := a.st.CreateHost(storage.Host{ID: "host-x", Name: "x"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	if err := a.st.PutEnrollToken(token.Hash("rme_fresh"), storage.EnrollToken{HostID: "host-x", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	_, rcpt, _ := seal.NewIdentity()
	enrol := func(hostname, os string) answer {
		b, _ := json.Marshal(map[string]string{"token": "rme_fresh", "public_key": rcpt, "hostname": hostname, "os": os, "arch": "amd64"})
		return a.do("POST", "/api/v1/enroll", string(b), cred{}, "192.0.2.1:1")
	}
	if r := enrol(strings.Repeat("h", 1<<19), "linux"); r.code != 400 || !strings.Contains(r.body, "hostname: at most 255 bytes") || strings.Contains(r.body, "wire:") {
		t.Fatalf("a 512 KiB hostname: %d %s", r.code, r.body)
	}
	a.want(enrol("web1", strings.Repeat("o", 65)), 400, "a long os")
	a.want(enrol("web1", "linux"), 200, "the same token with a sane request")
	if h, _ := a.st.GetHost("host-x"); h.Hostname != "web1" {
		t.Fatalf("stored hostname %q", h.Hostname)
	}
}
