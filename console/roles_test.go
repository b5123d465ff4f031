package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// routeRoles is the least role each API route needs ("" = no login). A
// route missing here fails the test: every new route must be placed.
var routeRoles = map[string]string{
	"POST /api/v1/login":                            "",
	"POST /api/v1/logout":                           "",
	"POST /api/v1/enroll":                           "",
	"GET /api/v1/auth/oidc/login":                   "",
	"GET /api/v1/auth/oidc/callback":                "",
	"GET /api/v1/hosts":                             auth.RoleViewer,
	"GET /api/v1/hosts/{id}":                        auth.RoleViewer,
	"GET /api/v1/hosts/{id}/schedules":              auth.RoleViewer,
	"GET /api/v1/hosts/{id}/drills":                 auth.RoleViewer,
	"GET /api/v1/repos":                             auth.RoleViewer,
	"GET /api/v1/repos/{id}":                        auth.RoleViewer,
	"GET /api/v1/repos/{id}/snapshots":              auth.RoleViewer,
	"GET /api/v1/repos/{id}/snapshots/{sid}/ls":     auth.RoleViewer,
	"GET /api/v1/repos/{id}/snapshots/{sid}/index":  auth.RoleViewer,
	"GET /api/v1/jobs":                              auth.RoleViewer,
	"GET /api/v1/jobs/{id}":                         auth.RoleViewer,
	"GET /api/v1/jobs/{id}/events":                  auth.RoleViewer,
	"GET /api/v1/jobs/{id}/changes":                 auth.RoleViewer,
	"GET /api/v1/tokens":                            auth.RoleViewer,
	"POST /api/v1/tokens":                           auth.RoleViewer,
	"DELETE /api/v1/tokens/{id}":                    auth.RoleViewer,
	"POST /api/v1/hosts":                            auth.RoleOperator,
	"POST /api/v1/hosts/{id}/enroll-token":          auth.RoleOperator,
	"POST /api/v1/hosts/{id}/jobs":                  auth.RoleOperator,
	"POST /api/v1/jobs/bulk":                        auth.RoleOperator,
	"POST /api/v1/jobs/{id}/cancel":                 auth.RoleOperator,
	"POST /api/v1/restores":                         auth.RoleOperator,
	"PUT /api/v1/hosts/{id}/schedules":              auth.RoleOperator,
	"POST /api/v1/repos":                            auth.RoleAdmin,
	"PATCH /api/v1/repos/{id}":                      auth.RoleAdmin,
	"DELETE /api/v1/repos/{id}":                     auth.RoleAdmin,
	"POST /api/v1/repos/{id}/rotate-password":       auth.RoleAdmin,
	"POST /api/v1/repos/{id}/test":                  auth.RoleOperator,
	"POST /api/v1/repos/{id}/forget-preview":        auth.RoleOperator,
	"POST /api/v1/repos/{id}/snapshots/{sid}/index": auth.RoleOperator,
	"POST /api/v1/hosts/{id}/revoke":                auth.RoleAdmin,
	"POST /api/v1/jobs/{id}/approve":                auth.RoleAdmin,
	"GET /api/v1/policies":                          auth.RoleViewer,
	"GET /api/v1/policies/preview":                  auth.RoleViewer,
	"GET /api/v1/policies/{id}":                     auth.RoleViewer,
	"GET /api/v1/reports/compliance":                auth.RoleViewer,
	"POST /api/v1/policies":                         auth.RoleAdmin,
	"PUT /api/v1/policies/{id}":                     auth.RoleAdmin,
	"DELETE /api/v1/policies/{id}":                  auth.RoleAdmin,
	"GET /api/v1/users":                             auth.RoleAdmin,
	"POST /api/v1/users":                            auth.RoleAdmin,
	"GET /api/v1/audit":                             auth.RoleAdmin,
	"DELETE /api/v1/hosts/{id}":                     auth.RoleAdmin,
	"GET /api/v1/alerts":                            auth.RoleViewer,
	"POST /api/v1/alerts/{id}/ack":                  auth.RoleOperator,
	"POST /api/v1/alerts/{id}/silence":              auth.RoleOperator,
	"PATCH /api/v1/hosts/{id}":                      auth.RoleOperator,
	"GET /api/v1/channels":                          auth.RoleAdmin,
	"POST /api/v1/channels":                         auth.RoleAdmin,
	"POST /api/v1/channels/{id}/test":               auth.RoleAdmin,
	"POST /api/v1/mqtt-users":                       auth.RoleAdmin,
	"GET /api/v1/settings":                          auth.RoleAdmin,
	"PUT /api/v1/settings":                          auth.RoleAdmin,
	"POST /api/v1/admin/backup":                     auth.RoleAdmin,
	"PATCH /api/v1/users/{name}":                    auth.RoleAdmin,
	"DELETE /api/v1/users/{name}":                   auth.RoleAdmin,
	"PATCH /api/v1/channels/{id}":                   auth.RoleAdmin,
	"DELETE /api/v1/channels/{id}":                  auth.RoleAdmin,
	"GET /api/v1/mqtt-users":                        auth.RoleAdmin,
	"DELETE /api/v1/mqtt-users/{name}":              auth.RoleAdmin,
	"GET /api/v1/enroll-keys":                       auth.RoleAdmin,
	"POST /api/v1/enroll-keys":                      auth.RoleAdmin,
	"DELETE /api/v1/enroll-keys/{id}":               auth.RoleAdmin,
	"GET /api/v1/me":                                auth.RoleViewer,
	"POST /api/v1/me/totp":                          auth.RoleViewer,
	"POST /api/v1/me/totp/confirm":                  auth.RoleViewer,
	"DELETE /api/v1/users/{name}/totp":              auth.RoleAdmin,
	"GET /api/v1/settings/sign-in":                  auth.RoleAdmin,
	"PUT /api/v1/settings/sign-in":                  auth.RoleAdmin,

	// Sizes before a download read the index; the download sends bytes
	// out of the backups; agents send those with their own credential.
	"GET /api/v1/repos/{id}/snapshots/{sid}/size":     auth.RoleViewer,
	"GET /api/v1/repos/{id}/snapshots/{sid}/download": auth.RoleOperator,
	"POST /api/v1/agent/dumps/{job}":                  "",
}

// sessionOnly are the routes a signed-in browser session uses and an API
// token is refused (403) by design: the matrix calls them with a session.
var sessionOnly = map[string]bool{
	"POST /api/v1/me/totp":         true,
	"POST /api/v1/me/totp/confirm": true,
}

func TestRoleMatrix(t *testing.T) {
	c, st, _ := newTestConsole(t)
	enrolledHost(t, st, "host-a")
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()

	tokens := map[string]string{}
	sessions := map[string]*http.Cookie{}
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		hash, _ := auth.HashPassword("pw-" + role)
		if err := st.CreateUser(storage.User{Name: role + "-user", PasswordHash: hash, Role: role, CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		tok := "rmt_test_" + role
		if err := st.PutAPIToken(token.Hash(tok), storage.APIToken{ID: "tok-" + role, Name: role, User: role + "-user"}); err != nil {
			t.Fatal(err)
		}
		tokens[role] = tok
		resp, err := http.Post(srv.URL+"/api/v1/login", "application/json", strings.NewReader(`{"username":"`+role+`-user","password":"pw-`+role+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		for _, ck := range resp.Cookies() {
			if ck.Name == "rm_session" {
				sessions[role] = ck
			}
		}
		if sessions[role] == nil {
			t.Fatalf("login as %s: %s, no session", role, resp.Status)
		}
	}

	// Every route of the router must be in the table.
	var routes []string
	router := c.router(nil)
	if err := chi.Walk(router, func(method, route string, _ http.Handler, _ ...func(http.Handler) http.Handler) error {
		if strings.HasPrefix(route, "/api/") {
			key := method + " " + strings.TrimSuffix(route, "/")
			routes = append(routes, key)
			if _, ok := routeRoles[key]; !ok {
				t.Errorf("route %s has no entry in routeRoles", key)
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if len(routes) != len(routeRoles) {
		t.Errorf("router has %d API routes, table %d", len(routes), len(routeRoles))
	}

	rank := map[string]int{"": 0, auth.RoleViewer: 1, auth.RoleOperator: 2, auth.RoleAdmin: 3}
	cells := 0
	for _, route := range routes {
		method, pattern, _ := strings.Cut(route, " ")
		path := strings.NewReplacer("{id}", "host-a", "{sid}", "0123abcd").Replace(pattern)
		need := routeRoles[route]
		for _, who := range []string{"", auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
			req, _ := http.NewRequest(method, srv.URL+path, strings.NewReader("{}"))
			req.Header.Set("Content-Type", "application/json")
			switch {
			case who != "" && sessionOnly[route]:
				req.AddCookie(sessions[who])
			case who != "":
				req.Header.Set("Authorization", "Bearer "+tokens[who])
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			cells++
			allowed := rank[who] >= rank[need]
			switch {
			case !allowed && who == "" && resp.StatusCode != http.StatusUnauthorized:
				t.Errorf("%s as anonymous: %d, want 401", route, resp.StatusCode)
			case !allowed && who != "" && resp.StatusCode != http.StatusForbidden:
				t.Errorf("%s as %s: %d, want 403", route, who, resp.StatusCode)
			case allowed && (resp.StatusCode == http.StatusUnauthorized || resp.StatusCode == http.StatusForbidden) && need != "":
				t.Errorf("%s as %s: %d, want it allowed", route, who, resp.StatusCode)
			}
		}
	}
	t.Logf("role matrix: %d routes × 4 principals = %d cells", len(routes), cells)
}

func TestEnrolTokenExpiredOrUsed(t *testing.T) {
	c, st, _ := newTestConsole(t)
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	if err := st.CreateHost(storage.Host{ID: "host-x", Name: "x"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	_ = st.PutEnrollToken(token.Hash("expired"), storage.EnrollToken{HostID: "host-x", CreatedAt: now.Add(-48 * time.Hour), ExpiresAt: now.Add(-time.Hour)})
	_ = st.PutEnrollToken(token.Hash("fresh"), storage.EnrollToken{HostID: "host-x", CreatedAt: now, ExpiresAt: now.Add(time.Hour)})
	_, rcpt, _ := seal.NewIdentity()
	enrol := func(tok string) int {
		body := `{"token":"` + tok + `","public_key":"` + rcpt + `","hostname":"x","os":"linux","arch":"amd64"}`
		resp, err := http.Post(srv.URL+"/api/v1/enroll", "application/json", strings.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := enrol("expired"); code != http.StatusUnauthorized {
		t.Errorf("expired token: %d, want 401", code)
	}
	if code := enrol("fresh"); code != http.StatusOK {
		t.Fatalf("fresh token: %d", code)
	}
	if code := enrol("fresh"); code != http.StatusUnauthorized {
		t.Errorf("used token: %d, want 401", code)
	}
}
