// Package auth is who may do what in the console: users and their
// passwords, second factors (totp.go), sign-in through an OpenID provider
// (oidc.go), sessions, API tokens, the roles and their middleware, the
// login lock-out and the audit log of what people change.
package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
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
	// MustEnrol: a second factor is required for this user's role and it
	// has none; the session may only set one up (RequireAuth).
	MustEnrol bool
}

func From(ctx context.Context) (Principal, bool) {
	p, ok := ctx.Value(ctxKey{}).(Principal)
	return p, ok
}

// Lock-out. Failures are counted per (user name, source address): this many
// within lockWindow lock that pair, so a guesser elsewhere (or anyone who
// merely knows the name "admin") cannot lock the real user out. Each lock
// of the same pair lasts twice the one before (lockBase, 30m, 1h, … up to
// lockMax), so one address gets at most lockAfter guesses per lockMax once
// it persists; the per-address rate limit on the login routes comes on top.
// A pair is forgotten after lockMemory without a lock or a success.
const (
	lockAfter  = 5
	lockWindow = 15 * time.Minute
	lockBase   = 15 * time.Minute
	lockMax    = 6 * time.Hour
	lockMemory = 24 * time.Hour
	// maxGuardEntries bounds the pairs remembered; beyond it, pairs that
	// lock nothing go first.
	maxGuardEntries = 10000
)

// MaxNameLen bounds every name a person gives the console (user names at
// login, token and channel names): longer is refused before it becomes a
// lock-out key, a log line or an audit record.
const MaxNameLen = 200

type loginGuard struct {
	mu sync.Mutex
	m  map[guardKey]*loginFails
}

// guardKey is who tries (the user name) from where (the canonical address,
// an IPv6 /64).
type guardKey struct{ user, addr string }

type loginFails struct {
	n           int       // failures since first
	first       time.Time // start of the counting window
	locks       int       // locks so far (the back-off)
	lockedUntil time.Time
}

// lockFor is the length of the n-th lock of a pair.
func lockFor(n int) time.Duration {
	d := lockBase
	for i := 1; i < n && d < lockMax; i++ {
		d *= 2
	}
	return min(d, lockMax)
}

// forgettable: the entry neither locks nor counts nor remembers a lock.
func (f *loginFails) forgettable(now time.Time) bool {
	return now.Sub(f.first) > lockWindow && now.Sub(f.lockedUntil) > lockMemory
}

func (g *loginGuard) locked(k guardKey, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	f := g.m[k]
	return f != nil && now.Before(f.lockedUntil)
}

func (g *loginGuard) fail(k guardKey, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.m == nil {
		g.m = map[guardKey]*loginFails{}
	}
	f := g.m[k]
	if f == nil || f.forgettable(now) {
		if f == nil && len(g.m) >= maxGuardEntries {
			g.shrink(now)
		}
		f = &loginFails{}
		g.m[k] = f
	}
	if f.n == 0 || now.Sub(f.first) > lockWindow {
		f.n, f.first = 0, now
	}
	f.n++
	if f.n >= lockAfter {
		f.locks++
		f.lockedUntil = now.Add(lockFor(f.locks))
		f.n = 0
	}
}

// shrink makes room: first the entries that no longer count, then those
// that lock nothing now, then those whose lock ends soonest.
func (g *loginGuard) shrink(now time.Time) {
	for k, f := range g.m {
		if f.forgettable(now) {
			delete(g.m, k)
		}
	}
	for k, f := range g.m {
		if len(g.m) < maxGuardEntries {
			return
		}
		if !now.Before(f.lockedUntil) {
			delete(g.m, k)
		}
	}
	for len(g.m) >= maxGuardEntries {
		var soonest guardKey
		var until time.Time
		for k, f := range g.m {
			if until.IsZero() || f.lockedUntil.Before(until) {
				soonest, until = k, f.lockedUntil
			}
		}
		delete(g.m, soonest)
	}
}

func (g *loginGuard) succeed(k guardKey) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.m, k)
}

var (
	// ErrLocalLoginOff: password sign-in is off (--local-login=false) and
	// this is not the break-glass account.
	ErrLocalLoginOff = errors.New("password sign-in is turned off: sign in with your organisation's provider")
	ErrLocked        = errors.New("too many failed logins from this address; try again later")
	// ErrDisabled is only said to someone who gave the right password.
	ErrDisabled = errors.New("this account is disabled; ask an administrator")
)

// Login verifies a username and password, with lock-out, and audits it.
func (a *Auth) Login(r *http.Request, name, password string) (storage.User, error) {
	now := a.now()
	if len(name) > MaxNameLen {
		// No such user can exist: refused without a lock-out entry, and
		// logged and audited cut short.
		a.log.Warn("login failed: user name too long", "user", storage.Truncate(name, 64), "bytes", len(name), "remote", r.RemoteAddr)
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login failed", Detail: "user name too long", Remote: r.RemoteAddr, Status: http.StatusUnauthorized})
		return storage.User{}, errUnauthenticated
	}
	if !a.LocalLogin(name) {
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login refused", Detail: "password sign-in is off", Remote: r.RemoteAddr, Status: http.StatusForbidden})
		return storage.User{}, ErrLocalLoginOff
	}
	addr, _ := httpx.RemoteIP(r)
	key := guardKey{user: name, addr: addr}
	if a.guard.locked(key, now) {
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login locked out", Remote: r.RemoteAddr, Status: http.StatusTooManyRequests})
		return storage.User{}, ErrLocked
	}
	u, ok := a.checkLogin(name, password)
	if !ok {
		a.guard.fail(key, now)
		a.log.Warn("login failed", "user", name, "remote", r.RemoteAddr)
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login failed", Remote: r.RemoteAddr, Status: http.StatusUnauthorized})
		return storage.User{}, errUnauthenticated
	}
	if u.Disabled {
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login refused: disabled", Remote: r.RemoteAddr, Status: http.StatusForbidden})
		return storage.User{}, ErrDisabled
	}
	// The password was right; with a second factor the login is not done
	// until its code is (SecondFactor), so neither the lock-out count nor
	// the audit says "login" yet.
	if sf, err := a.store.GetSecondFactor(u.Name); err == nil && sf.Confirmed {
		return u, ErrSecondFactorRequired
	} else if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, err
	}
	a.guard.succeed(key)
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
	now := a.now().UTC()
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

// identify resolves the request's bearer token or session cookie. A
// disabled user's sessions and tokens do not authenticate; an expired token
// does not; a token acts with the lower of its own role and its user's
// current one.
func (a *Auth) identify(r *http.Request) (Principal, error) {
	now := a.now()
	if authz := r.Header.Get("Authorization"); authz != "" {
		tok, ok := strings.CutPrefix(authz, "Bearer ")
		if !ok || tok == "" {
			return Principal{}, errUnauthenticated
		}
		hash := token.Hash(tok)
		t, err := a.store.GetAPIToken(hash)
		if err != nil || TokenExpired(t, now) {
			return Principal{}, errUnauthenticated
		}
		u, err := a.store.GetUser(t.User)
		if err != nil || u.Disabled {
			return Principal{}, errUnauthenticated
		}
		a.touchToken(hash, t, now)
		return Principal{User: u.Name, Role: TokenRole(t, u)}, nil
	}
	ck, err := r.Cookie(sessionCookie)
	if err != nil || ck.Value == "" {
		return Principal{}, errUnauthenticated
	}
	s, err := a.store.GetSession(token.Hash(ck.Value), now)
	if err != nil {
		return Principal{}, errUnauthenticated
	}
	u, err := a.store.GetUser(s.User)
	if err != nil || u.Disabled {
		return Principal{}, errUnauthenticated
	}
	return Principal{User: u.Name, Role: u.Role, Session: true, MustEnrol: a.mustEnrol(u)}, nil
}

// tokenTouchEvery is how stale a token's last use may get: a script that
// polls every second would otherwise cost a store write per request.
const tokenTouchEvery = time.Minute

// touchToken records the token's use when its record is more than
// tokenTouchEvery old. The record was just read, so a busy token costs no
// write transaction between touches; a failure is logged, never fatal to
// the request.
func (a *Auth) touchToken(hash []byte, t storage.APIToken, now time.Time) {
	if !t.LastUsedAt.IsZero() && now.Sub(t.LastUsedAt) < tokenTouchEvery {
		return
	}
	if _, err := a.store.TouchAPIToken(hash, now, tokenTouchEvery); err != nil && !errors.Is(err, storage.ErrNotFound) {
		a.log.Warn("recording a token's last use failed", "token_id", t.ID, "error", err)
	}
}

// TokenExpired reports whether t no longer authenticates at now. A token
// without an expiry never expires.
func TokenExpired(t storage.APIToken, now time.Time) bool {
	return !t.ExpiresAt.IsZero() && !now.Before(t.ExpiresAt)
}

// TokenRole is the role a token of user u acts with: the lower of the
// token's own (none: the user's) and the user's current role.
func TokenRole(t storage.APIToken, u storage.User) string {
	if t.Role == "" || roleRank[t.Role] == 0 || roleRank[u.Role] < roleRank[t.Role] {
		return u.Role
	}
	return t.Role
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
			if p.MustEnrol && !enrolPaths[r.URL.Path] {
				if api {
					httpx.WriteError(w, http.StatusForbidden, "a second factor is required for the "+p.Role+" role: set one up first (POST /api/v1/me/totp, or the page "+EnrolPage+")")
				} else {
					http.Redirect(w, r, EnrolPage, http.StatusSeeOther)
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

// EnrolPage is the page that sets up a second factor; a session that must
// have one is sent there.
const EnrolPage = "/second-factor"

// enrolPaths are what a session that must set up a second factor may
// still reach.
var enrolPaths = map[string]bool{
	EnrolPage: true, EnrolPage + "/qr.png": true,
	"/api/v1/me": true, "/api/v1/me/totp": true, "/api/v1/me/totp/confirm": true,
}

// SourceOIDC marks users made by a sign-in through the OpenID provider.
const SourceOIDC = "oidc"

// settingSecondFactor is the stored setting "a second factor is required
// for admins and operators".
const settingSecondFactor = "auth.second_factor_required"

// SecondFactorRequired reports the setting.
func (a *Auth) SecondFactorRequired() bool { return a.requireSF.Load() }

// SetSecondFactorRequired changes the setting: from then on, admins and
// operators without a second factor who sign in with a password can only
// set one up.
func (a *Auth) SetSecondFactorRequired(on bool) error {
	if err := a.store.PutSetting(settingSecondFactor, on); err != nil {
		return fmt.Errorf("auth: second factor setting: %w", err)
	}
	a.requireSF.Store(on)
	return nil
}

// MustEnrol reports whether u, signed in with a password, may do nothing
// but set up a second factor.
func (a *Auth) MustEnrol(u storage.User) bool { return a.mustEnrol(u) }

// mustEnrol: the setting is on, u's role is operator or admin, u signs
// in with a password (an OpenID provider's users have its second factor)
// and u has no confirmed second factor. Read per request of such users
// only while the setting is on.
func (a *Auth) mustEnrol(u storage.User) bool {
	if !a.requireSF.Load() || roleRank[u.Role] < roleRank[RoleOperator] || u.Source == SourceOIDC {
		return false
	}
	sf, err := a.store.GetSecondFactor(u.Name)
	return err != nil || !sf.Confirmed
}

// Options configure Auth.
type Options struct {
	Store  *storage.Store
	Logger *slog.Logger
	// SecureCookies marks session cookies Secure (set when serving HTTPS).
	SecureCookies bool
	// LocalLoginOff turns password sign-in off for everyone but
	// BreakGlassUser (default "admin"), who keeps it for when the OpenID
	// provider is down or misconfigured.
	LocalLoginOff  bool
	BreakGlassUser string
	// OIDC, when set, is the OpenID provider people sign in with.
	OIDC *OIDCConfig
}

// LocalLogin reports whether name may sign in with a password.
func (a *Auth) LocalLogin(name string) bool {
	return !a.opts.LocalLoginOff || name == a.opts.BreakGlassUser
}

// Auth authenticates people and records what they change.
type Auth struct {
	opts  Options
	store *storage.Store
	log   *slog.Logger
	guard loginGuard
	// usersMu serialises changes of users, so that two admins demoting
	// each other at once cannot leave the console without one.
	usersMu sync.Mutex
	// now is the clock (tests move it).
	now func() time.Time
	// pending are the browser logins waiting for their second factor.
	pending pendingLogins
	// requireSF mirrors the stored setting settingSecondFactor.
	requireSF atomic.Bool
	// oidc is the OpenID provider and its sign-ins in flight.
	oidc oidcClient
}

// New builds an Auth.
func New(opts Options) *Auth {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.BreakGlassUser == "" {
		opts.BreakGlassUser = "admin"
	}
	a := &Auth{opts: opts, store: opts.Store, log: opts.Logger.With("component", "auth"), now: time.Now}
	var on bool
	if err := a.store.GetSetting(settingSecondFactor, &on); err != nil && !errors.Is(err, storage.ErrNotFound) {
		// Fail closed: a setting that cannot be read is taken as on.
		a.log.Error("reading the second factor setting failed; requiring one", "error", err)
		on = true
	}
	a.requireSF.Store(on)
	return a
}

// WithPrincipal returns ctx carrying p (for tests and internal callers).
func WithPrincipal(ctx context.Context, p Principal) context.Context {
	return context.WithValue(ctx, ctxKey{}, p)
}
