package console

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"strings"
	"sync"
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

// Lock-out: this many failures for one user name within lockWindow lock it
// for lockWindow, whatever address they come from (the per-address rate
// limit does not stop a distributed guess).
const (
	lockAfter  = 5
	lockWindow = 15 * time.Minute
)

type loginGuard struct {
	mu sync.Mutex
	m  map[string]*loginFails
}

type loginFails struct {
	n           int
	first       time.Time
	lockedUntil time.Time
}

func (g *loginGuard) locked(name string, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.m[name]
	return f != nil && now.Before(f.lockedUntil)
}

func (g *loginGuard) fail(name string, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[string]*loginFails{}
	}
	f := g.m[name]
	if f == nil || now.Sub(f.first) > lockWindow {
		f = &loginFails{first: now}
		g.m[name] = f
	}
	f.n++
	if f.n >= lockAfter {
		f.lockedUntil = now.Add(lockWindow)
	}
	// Bound the map: forget entries that can no longer lock anything.
	if len(g.m) > 10000 {
		for k, v := range g.m {
			if now.Sub(v.first) > lockWindow && now.After(v.lockedUntil) {
				delete(g.m, k)
			}
		}
	}
}

func (g *loginGuard) succeed(name string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, name)
}

var errLocked = errors.New("too many failed logins; try again later")

// login verifies a username and password, with lock-out, and audits it.
func (c *Console) login(r *http.Request, name, password string) (storage.User, error) {
	now := time.Now()
	if c.guard.locked(name, now) {
		c.record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login locked out", Remote: r.RemoteAddr, Status: http.StatusTooManyRequests})
		return storage.User{}, errLocked
	}
	u, ok := c.checkLogin(name, password)
	if !ok {
		c.guard.fail(name, now)
		c.log.Warn("login failed", "user", name, "remote", r.RemoteAddr)
		c.record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login failed", Remote: r.RemoteAddr, Status: http.StatusUnauthorized})
		return storage.User{}, errUnauthenticated
	}
	c.guard.succeed(name)
	c.record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login", Remote: r.RemoteAddr, Status: http.StatusOK})
	return u, nil
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
// redirect to the login form. What each role may do is set per route group
// with requireRole.
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
