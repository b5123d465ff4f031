package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"reflect"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

func TestClaimAt(t *testing.T) {
	claims := map[string]any{
		"groups":       []any{"a", "b", 3},
		"role":         "admin",
		"realm_access": map[string]any{"roles": []any{"rm-ops"}},
	}
	for _, c := range []struct {
		path string
		want []string
		has  bool
	}{
		{"groups", []string{"a", "b"}, true},
		{"role", []string{"admin"}, true},
		{"realm_access.roles", []string{"rm-ops"}, true},
		{"missing", nil, false},
		{"role.deeper", nil, false},
	} {
		got, has := claimAt(claims, c.path)
		if has != c.has || !reflect.DeepEqual(got, c.want) {
			t.Errorf("claimAt %q: %v %v, want %v %v", c.path, got, has, c.want, c.has)
		}
	}
}

func oidcAuth(t *testing.T) (*Auth, *storage.Store) {
	t.Helper()
	a, st, _ := newAuthWithUser(t)
	// The break-glass admin: demoting the provider's admin leaves one.
	if err := st.CreateUser(storage.User{Name: "admin", Role: RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	a.opts.OIDC = &OIDCConfig{RolesClaim: "groups", AdminValues: []string{"rm-admins"}, OperatorValues: []string{"rm-ops"}, ViewerValues: []string{"rm-viewers"}}
	return a, st
}

func groups(name string, g ...any) map[string]any {
	return map[string]any{"preferred_username": name, "groups": g}
}

// The highest mapped role wins; the account is made at the first sign-in
// and re-mapped at each one (a changed role ends its other sessions); no
// mapped value refuses with a 403 and ends what the account could still
// do; a local account's name is never taken over.
func TestOIDCUserMapping(t *testing.T) {
	a, st := oidcAuth(t)
	r := httptest.NewRequest("GET", "/api/v1/auth/oidc/callback", nil)
	u, err := a.oidcUser(r, groups("ada", "staff", "rm-ops", "rm-admins"), "sub-1")
	if err != nil || u.Role != RoleAdmin || u.Source != SourceOIDC {
		t.Fatalf("first sign-in: %+v %v", u, err)
	}
	rec := httptest.NewRecorder()
	if err := a.StartSession(rec, "ada"); err != nil {
		t.Fatal(err)
	}
	if u, err = a.oidcUser(r, groups("ada", "rm-viewers"), "sub-1"); err != nil || u.Role != RoleViewer {
		t.Fatalf("re-mapped: %+v %v", u, err)
	}
	if _, err := st.GetSession(token.Hash(rec.Result().Cookies()[0].Value), time.Now()); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("a session of the old role survived the re-mapping: %v", err)
	}
	if err := st.PutAPIToken(token.Hash("rmt_ada"), storage.APIToken{ID: "tok-ada", Name: "x", User: "ada"}); err != nil {
		t.Fatal(err)
	}
	_, err = a.oidcUser(r, groups("ada", "staff"), "sub-1")
	var oe *OIDCError
	if !errors.As(err, &oe) || oe.Status != http.StatusForbidden {
		t.Fatalf("no mapped role: %v", err)
	}
	if toks, _ := st.ListAPITokens(); len(toks) != 0 {
		t.Errorf("the unmapped user's tokens remain: %+v", toks)
	}
	// No roles claim at all is no mapped role either.
	if _, err := a.oidcUser(r, map[string]any{"preferred_username": "eve"}, "sub-2"); !errors.As(err, &oe) {
		t.Errorf("no roles claim: %v", err)
	}
	if _, err := st.GetUser("eve"); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("an unmapped user was made: %v", err)
	}
	// "ops" is a local (password) account.
	if _, err := a.oidcUser(r, groups("ops", "rm-admins"), "sub-3"); !errors.As(err, &oe) || oe.Status != http.StatusForbidden {
		t.Errorf("taking over a local account: %v", err)
	}
	if u, _ := st.GetUser("ops"); u.Role != RoleOperator || u.Source != "" {
		t.Errorf("the local account changed: %+v", u)
	}
	// Without preferred_username the e-mail, then the subject names it.
	if u, err := a.oidcUser(r, map[string]any{"email": "m@example.org", "groups": []any{"rm-ops"}}, "sub-4"); err != nil || u.Name != "m@example.org" {
		t.Errorf("named by e-mail: %+v %v", u, err)
	}
	if u, err := a.oidcUser(r, map[string]any{"groups": []any{"rm-ops"}}, "sub-5"); err != nil || u.Name != "sub-5" {
		t.Errorf("named by subject: %+v %v", u, err)
	}
	if _, err := a.oidcUser(r, groups("bad name!", "rm-ops"), "sub-6"); !errors.As(err, &oe) {
		t.Errorf("an unusable name: %v", err)
	}
}

// With password sign-in off only the break-glass user may use a password.
func TestLocalLoginOff(t *testing.T) {
	a, st, _ := newAuthWithUser(t)
	a.opts.LocalLoginOff, a.opts.BreakGlassUser = true, "root"
	hash, _ := HashPassword("root-password")
	if err := st.CreateUser(storage.User{Name: "root", PasswordHash: hash, Role: RoleAdmin}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(loginFrom("192.0.2.1:1"), "ops", "right-password"); !errors.Is(err, ErrLocalLoginOff) {
		t.Errorf("a password login with local login off: %v", err)
	}
	if _, err := a.Login(loginFrom("192.0.2.1:1"), "root", "root-password"); err != nil {
		t.Errorf("the break-glass login: %v", err)
	}
}
