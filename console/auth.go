package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Roles.
const (
	RoleAdmin    = "admin"
	RoleOperator = "operator"
	RoleViewer   = "viewer"
)

const (
	sessionCookie = "rm_session"
	sessionTTL    = 12 * time.Hour
)

// OWASP's argon2id baseline (19 MiB, 2 passes): cheap enough to keep RSS low.
var argonParams = &argon2id.Params{Memory: 19 * 1024, Iterations: 2, Parallelism: 1, SaltLength: 16, KeyLength: 32}

func hashPassword(pw string) (string, error) { return argon2id.CreateHash(pw, argonParams) }

// dummyHash is compared against when the user does not exist, so that a
// login for an unknown name costs the same time as a wrong password.
var dummyHash, _ = hashPassword("restic-manager: no such user")

var _ broker.Authenticator = (*Console)(nil)

// AuthenticateHost checks an agent's MQTT credential against its stored hash.
func (c *Console) AuthenticateHost(hostID string, password []byte) bool {
	if !wire.ValidID(hostID) || len(password) == 0 {
		return false
	}
	h, err := c.store.GetHost(hostID)
	if err != nil || !h.Enrolled || len(h.CredentialHash) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(sha(string(password)), h.CredentialHash) == 1
}

type ctxKey struct{}

// principal is who made a request.
type principal struct {
	User    string
	Role    string
	Session bool // authenticated by cookie (a browser), not by bearer token
}

func principalFrom(ctx context.Context) (principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(principal)
	return p, ok
}

// checkLogin verifies a username and password.
func (c *Console) checkLogin(name, password string) (storage.User, bool) {
	u, err := c.store.GetUser(name)
	if err != nil {
		_, _ = argon2id.ComparePasswordAndHash(password, dummyHash)
		return storage.User{}, false
	}
	ok, err := argon2id.ComparePasswordAndHash(password, u.PasswordHash)
	return u, err == nil && ok
}

// startSession stores a new session and sets its cookie.
func (c *Console) startSession(w http.ResponseWriter, user string) error {
	tok := randomToken(32)
	now := time.Now().UTC()
	if err := c.store.PutSession(sha(tok), storage.Session{User: user, CreatedAt: now, ExpiresAt: now.Add(sessionTTL)}); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true, Secure: c.opts.SecureCookies,
		SameSite: http.SameSiteLaxMode, MaxAge: int(sessionTTL / time.Second),
	})
	return nil
}

func (c *Console) endSession(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		_ = c.store.DeleteSession(sha(ck.Value))
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: c.opts.SecureCookies, SameSite: http.SameSiteLaxMode})
}

var errUnauthenticated = errors.New("authentication required")

// identify resolves the request's bearer token or session cookie.
func (c *Console) identify(r *http.Request) (principal, error) {
	if authz := r.Header.Get("Authorization"); authz != "" {
		tok, ok := strings.CutPrefix(authz, "Bearer ")
		if !ok || tok == "" {
			return principal{}, errUnauthenticated
		}
		t, err := c.store.GetAPIToken(sha(tok))
		if err != nil {
			return principal{}, errUnauthenticated
		}
		u, err := c.store.GetUser(t.User)
		if err != nil {
			return principal{}, errUnauthenticated
		}
		return principal{User: u.Name, Role: u.Role}, nil
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return principal{}, errUnauthenticated
	}
	s, err := c.store.GetSession(sha(ck.Value), time.Now())
	if err != nil {
		return principal{}, errUnauthenticated
	}
	u, err := c.store.GetUser(s.User)
	if err != nil {
		return principal{}, errUnauthenticated
	}
	return principal{User: u.Name, Role: u.Role, Session: true}, nil
}

// requireAuth rejects anonymous requests; the API answers 401 JSON, pages
// redirect to the login form. Viewers may only read.
func (c *Console) requireAuth(api bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := c.identify(r)
			if err != nil {
				if api {
					writeError(w, http.StatusUnauthorized, "authentication required")
				} else {
					http.Redirect(w, r, "/login", http.StatusSeeOther)
				}
				return
			}
			if !safeMethod(r.Method) && p.Role == RoleViewer {
				writeError(w, http.StatusForbidden, "viewers cannot change anything")
				return
			}
			next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, p)))
		})
	}
}

func safeMethod(m string) bool {
	return m == http.MethodGet || m == http.MethodHead || m == http.MethodOptions
}

// requireRole refuses principals below the given role. Order: viewer <
// operator < admin.
func requireRole(role string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := principalFrom(r.Context())
			if !ok || roleRank[p.Role] < roleRank[role] {
				writeError(w, http.StatusForbidden, "this needs the "+role+" role")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

var roleRank = map[string]int{RoleViewer: 1, RoleOperator: 2, RoleAdmin: 3}
