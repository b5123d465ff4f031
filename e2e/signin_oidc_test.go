package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// idpUser is a user of the test's OpenID provider.
type idpUser struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	Groups   []string `json:"groups"`
}

// startOIDCProvider runs the pinned OpenID provider (`make tools` builds
// .tools/bin/oidcprovider from tools/oidcprovider) with one client whose
// redirect URI is redirect, and returns its issuer URL once its discovery
// document answers.
func startOIDCProvider(t *testing.T, clientID, secret, redirect string, users []idpUser) string {
	t.Helper()
	bin := os.Getenv("RM_TEST_OIDCPROVIDER")
	if bin == "" {
		bin = filepath.Join(testenv.Root(t), ".tools", "bin", "oidcprovider")
	}
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("the OpenID provider is not built (run `make tools`): %v", err)
	}
	dir := t.TempDir()
	secretFile, usersFile, ready := filepath.Join(dir, "secret"), filepath.Join(dir, "users.json"), filepath.Join(dir, "issuer")
	b, _ := json.Marshal(users)
	if err := os.WriteFile(secretFile, []byte(secret), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(usersFile, b, 0o600); err != nil {
		t.Fatal(err)
	}
	start(t, "oidcprovider", nil, bin, "-addr", "127.0.0.1:0", "-client-id", clientID, "-client-secret-file", secretFile,
		"-redirect-uri", redirect, "-users", usersFile, "-ready", ready)
	var issuer string
	eventually(t, 30*time.Second, "the OpenID provider's discovery", func() error {
		b, err := os.ReadFile(ready)
		if err != nil {
			return err
		}
		issuer = strings.TrimSpace(string(b))
		resp, err := http.Get(issuer + ".well-known/openid-configuration")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var doc struct {
			Issuer  string `json:"issuer"`
			JWKSURI string `json:"jwks_uri"`
		}
		if err := json.NewDecoder(resp.Body).Decode(&doc); err != nil {
			return err
		}
		if doc.Issuer == "" || doc.JWKSURI == "" {
			return errors.New("no issuer or jwks_uri in the discovery document")
		}
		return nil
	})
	return issuer
}

// Sign-in through a real OpenID provider (discovery, JWKS-verified ID
// token, the code flow with PKCE, state and nonce), in headless Chromium:
// each group maps to its role (the account is made at the first sign-in),
// and a user in none of the mapped groups gets a page that says so (403),
// not a 500. Password sign-in is off but for the break-glass admin.
func TestSignInOIDC(t *testing.T) {
	httpAddr := testenv.FreePort(t)
	consoleURL := "https://" + httpAddr
	const clientID, secret = "restic-manager", "client-secret-for-tests"
	users := []idpUser{
		{"ada", "ada-password", []string{"staff", "rm-admins"}},
		{"oli", "oli-password", []string{"rm-ops"}},
		{"vera", "vera-password", []string{"rm-viewers"}},
		{"nobody", "nobody-password", []string{"staff"}},
	}
	issuer := startOIDCProvider(t, clientID, secret, consoleURL+"/api/v1/auth/oidc/callback", users)
	secretFile := filepath.Join(t.TempDir(), "oidc-secret")
	if err := os.WriteFile(secretFile, []byte(secret+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, t.TempDir(), httpAddr, testenv.FreePort(t),
		"--oidc-issuer", issuer, "--oidc-client-id", clientID, "--oidc-client-secret-file", secretFile,
		"--oidc-roles-claim", "groups", "--oidc-scopes", "profile,email,groups",
		"--oidc-admin-values", "rm-admins", "--oidc-operator-values", "rm-ops,rm-operators", "--oidc-viewer-values", "rm-viewers",
		"--oidc-name", "Test IdP", "--local-login=false", "--login-rate=200")
	ctx := context.Background()

	// Password sign-in is off for everyone but the break-glass admin (the
	// harness's own session above is the admin's).
	srv.do("POST", "/api/v1/users", map[string]string{"name": "carol", "password": "carol-password-long", "role": "viewer"}, nil, 201)
	api := harness.NewSessionClient(srv.URL(""), &http.Transport{TLSClientConfig: srv.TLSConfig()})
	var refused struct{ Error string }
	if err := api.Expect(ctx, "POST", "/api/v1/login", map[string]string{"username": "carol", "password": "carol-password-long"}, &refused, 403); err != nil {
		t.Error(err)
	}

	// The code flow driven by an HTTP client with a cookie jar, for the
	// exact status of a user with no mapped role.
	if code, body := oidcByHTTP(t, srv, "nobody", "nobody-password"); code != http.StatusForbidden || !strings.Contains(body, "has no role") {
		t.Errorf("a user with no mapped role: %d %s", code, body)
	}

	b := newBrowser(t, srv)
	b.step("the sign-in page", chromedp.Navigate(srv.URL("/login")), chromedp.WaitVisible(chromedp.CSS(`#oidc-login`)))
	if s := b.text("#oidc-login"); s != "Sign in with Test IdP" {
		t.Errorf("the provider's button: %q", s)
	}
	if b.count(`#break-glass`) != 1 {
		t.Error("with password sign-in off, the form is not tucked away as the emergency sign-in")
	}
	for _, c := range []struct{ user, role string }{{"ada", "admin"}, {"oli", "operator"}, {"vera", "viewer"}} {
		var pw string
		for _, u := range users {
			if u.Username == c.user {
				pw = u.Password
			}
		}
		b.oidcLogin(c.user, pw)
		b.step("dashboard of "+c.user, chromedp.WaitVisible(chromedp.CSS(`main[data-page=dashboard]`)))
		if who := b.text("#who"); who != c.user+" ("+c.role+")" {
			t.Errorf("signed in as %q, want %s (%s)", who, c.user, c.role)
		}
		b.logout()
	}
	// The accounts were made with their mapped roles, marked as the
	// provider's.
	var listed []struct{ Name, Role, Source string }
	srv.do("GET", "/api/v1/users", nil, &listed, 200)
	got := map[string]string{}
	for _, u := range listed {
		got[u.Name] = u.Role + "/" + u.Source
	}
	if got["ada"] != "admin/oidc" || got["oli"] != "operator/oidc" || got["vera"] != "viewer/oidc" || got["nobody"] != "" || got["admin"] != "admin/" {
		t.Errorf("accounts after the sign-ins: %v", got)
	}

	b.oidcLogin("nobody", "nobody-password")
	b.step("the refusal page", chromedp.WaitVisible(chromedp.CSS(`#oidc-error`)))
	if msg := b.text("#oidc-error"); !strings.Contains(msg, `"nobody" has no role`) || !strings.Contains(msg, `"groups"`) {
		t.Errorf("refusal page: %q", msg)
	}
}

// oidcLogin signs in through the provider's button and login form.
func (b *browser) oidcLogin(user, password string) {
	b.t.Helper()
	b.step("sign in at the provider as "+user,
		chromedp.Navigate(b.srv.URL("/login")),
		chromedp.WaitVisible(chromedp.CSS(`#oidc-login`)),
		chromedp.Click(chromedp.CSS(`#oidc-login`)),
		chromedp.WaitVisible(chromedp.CSS(`input#username`)),
		chromedp.SendKeys(chromedp.CSS(`input#username`), user),
		chromedp.SendKeys(chromedp.CSS(`input#password`), password),
		chromedp.Click(chromedp.CSS(`button[type=submit]`)),
	)
}

var hiddenID = regexp.MustCompile(`name="id" value="([^"]+)"`)

// oidcByHTTP runs the code flow with a plain HTTP client (the provider's
// login form is plain HTML) and returns the console's last answer.
func oidcByHTTP(t *testing.T, srv *server, user, password string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: srv.TLSConfig()}}
	resp, err := c.Get(srv.URL("/api/v1/auth/oidc/login"))
	if err != nil {
		t.Fatal(err)
	}
	form, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := hiddenID.FindSubmatch(form)
	if resp.StatusCode != 200 || m == nil {
		t.Fatalf("the provider's login form: %d %s", resp.StatusCode, form)
	}
	loginURL := resp.Request.URL.ResolveReference(&url.URL{Path: "/login/username"})
	resp, err = c.PostForm(loginURL.String(), url.Values{"id": {string(m[1])}, "username": {user}, "password": {password}})
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	if !strings.HasPrefix(resp.Request.URL.String(), srv.URL("")) {
		t.Fatalf("the flow ended at %s, not the console: %d %s", resp.Request.URL, resp.StatusCode, body)
	}
	return resp.StatusCode, fmt.Sprint(string(body))
}
