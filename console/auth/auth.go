// Package auth is who may do what in the console: users and their
// passwords, sessions, API tokens, the roles and their middleware, the
// login lock-out and the audit log of what people change.
package auth

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/alexedwards/argon2id"

	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
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

func HashPassword(pw string) (string, error) { return argon2id.CreateHash(pw, argonParams) }

// dummyHash is compared against when the user does not exist, so that a
// login for an unknown name costs the same time as a wrong password.
var dummyHash, _ = HashPassword("restic-manager: no such user")

type ctxKey struct{}

// Principal is who made a request.
type Principal struct {
	User    string
	Role    string
	Session bool // authenticated by cookie (a browser), not by bearer token
}

func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
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

var ErrLocked = errors.New("too many failed logins; try again later")

// login verifies a username and password, with lock-out, and audits it.
func (a *Auth) Login(r *http.Request, name, password string) (storage.User, error) {
	now := time.Now()
	if a.guard.locked(name, now) {
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login locked out", Remote: r.RemoteAddr, Status: http.StatusTooManyRequests})
		return storage.User{}, ErrLocked
	}
	u, ok := a.checkLogin(name, password)
	if !ok {
		a.guard.fail(name, now)
		a.log.Warn("login failed", "user", name, "remote", r.RemoteAddr)
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login failed", Remote: r.RemoteAddr, Status: http.StatusUnauthorized})
		return storage.User{}, errUnauthenticated
	}
	a.guard.succeed(name)
	a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login", Remote: r.RemoteAddr, Status: http.StatusOK})
	return u, nil
}

// checkLogin verifies a username and password.
func (a *Auth) checkLogin(name, password string) (storage.User, bool) {
	u, err := a.store.GetUser(name)
	if err != nil {
		_, _ = argon2id.ComparePasswordAndHash(password, dummyHash)
		return storage.User{}, false
	}
	ok, err := argon2id.ComparePasswordAndHash(password, u.PasswordHash)
	return u, err == nil && ok
}

// startSession stores a new session and sets its cookie.
func (a *Auth) StartSession(w http.ResponseWriter, user string) error {
	tok := token.Random(32)
	now := time.Now().UTC()
	if err := a.store.PutSession(token.Hash(tok), storage.Session{User: user, CreatedAt: now, ExpiresAt: now.Add(sessionTTL)}); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{
		Name: sessionCookie, Value: tok, Path: "/", HttpOnly: true, Secure: a.opts.SecureCookies,
		SameSite: http.SameSiteLaxMode, MaxAge: int(sessionTTL / time.Second),
	})
	return nil
}

func (a *Auth) EndSession(w http.ResponseWriter, r *http.Request) {
	if ck, err := r.Cookie(sessionCookie); err == nil {
		_ = a.store.DeleteSession(token.Hash(ck.Value))
	}
	http.SetCookie(w, &http.Cookie{Name: sessionCookie, Value: "", Path: "/", MaxAge: -1, HttpOnly: true, Secure: a.opts.SecureCookies, SameSite: http.SameSiteLaxMode})
}

var errUnauthenticated = errors.New("authentication required")

// identify resolves the request's bearer token or session cookie.
func (a *Auth) identify(r *http.Request) (Principal, error) {
	if authz := r.Header.Get("Authorization"); authz != "" {
		tok, ok := strings.CutPrefix(authz, "Bearer ")
		if !ok || tok == "" {
			return Principal{}, errUnauthenticated
		}
		t, err := a.store.GetAPIToken(token.Hash(tok))
		if err != nil {
			return Principal{}, errUnauthenticated
		}
		u, err := a.store.GetUser(t.User)
		if err != nil {
			return Principal{}, errUnauthenticated
		}
		return Principal{User: u.Name, Role: u.Role}, nil
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return Principal{}, errUnauthenticated
	}
	s, err := a.store.GetSession(token.Hash(ck.Value), time.Now())
	if err != nil {
		return Principal{}, errUnauthenticated
	}
	u, err := a.store.GetUser(s.User)
	if err != nil {
		return Principal{}, errUnauthenticated
	}
	return Principal{User: u.Name, Role: u.Role, Session: true}, nil
}

// requireAuth rejects anonymous requests; the API answers 401 JSON, pages
// redirect to the login form. What each role may do is set per route group
// with requireRole.
func (a *Auth) RequireAuth(api bool) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, err := a.identify(r)
			if err != nil {
				if api {
					httpx.WriteError(w, http.StatusUnauthorized, "authentication required")
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

// requireRole refuses Principals below the given role. Order: viewer <
// operator < admin.
func RequireRole(role string) func(http.Handler) http.Handler {
	return func(next http.Handler) http.Handler {
		return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			p, ok := From(r.Context())
			if !ok || roleRank[p.Role] < roleRank[role] {
				httpx.WriteError(w, http.StatusForbidden, "this needs the "+role+" role")
				return
			}
			next.ServeHTTP(w, r)
		})
	}
}

var roleRank = map[string]int{RoleViewer: 1, RoleOperator: 2, RoleAdmin: 3}

// Can reports whether a principal has at least the given role.
func (p Principal) Can(role string) bool { return roleRank[p.Role] >= roleRank[role] }

// ValidRole reports whether s names a role.
func ValidRole(s string) bool { _, ok := roleRank[s]; return ok }

// Options configure Auth.
type Options struct {
	Store  *storage.Store
	Logger *slog.Logger
	// SecureCookies marks session cookies Secure (set when serving HTTPS).
	SecureCookies bool
}

// Auth authenticates people and records what they change.
type Auth struct {
	opts  Options
	store *storage.Store
	log   *slog.Logger
	guard loginGuard
}

// New builds an Auth.
func New(opts Options) *Auth {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	return &Auth{opts: opts, store: opts.Store, log: opts.Logger.With("component", "auth")}
}

// WithPrincipal returns ctx carrying p (for tests and internal callers).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}
