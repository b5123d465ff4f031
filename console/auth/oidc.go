package auth

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// Sign-in with an OpenID Connect provider: the authorization code flow
// with PKCE (S256), state and nonce; the ID token is verified against the
// provider's discovery document and published keys (go-oidc), and its
// roles claim (or, if the ID token lacks it, the userinfo answer's) maps
// to a role at every sign-in. The provider decides who may sign in and
// with which second factor; the console only maps what it says.

// OIDCConfig is the OpenID provider people sign in with.
type OIDCConfig struct {
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is this console's callback as registered at the
	// provider; empty: derived from the request (PublicURL is better).
	RedirectURL string
	// Scopes asked for besides openid (default profile, email).
	Scopes []string
	// RolesClaim names the claim whose values map to roles, e.g. "groups"
	// or "roles"; a dotted path reaches into objects (Keycloak's
	// "realm_access.roles").
	RolesClaim string
	// AdminValues, OperatorValues and ViewerValues are the claim values
	// that give each role; the highest that matches wins.
	AdminValues, OperatorValues, ViewerValues []string
	// DisplayName names the provider on the sign-in button.
	DisplayName string
}

// OIDCEnabled reports whether people can sign in with the provider.
func (a *Auth) OIDCEnabled() bool { return a.opts.OIDC != nil }

// OIDCName is how the sign-in button names the provider.
func (a *Auth) OIDCName() string {
	if a.opts.OIDC == nil {
		return ""
	}
	if a.opts.OIDC.DisplayName != "" {
		return a.opts.OIDC.DisplayName
	}
	return "your organisation's account"
}

// LocalLoginOff reports whether password sign-in is off (but for the
// break-glass account).
func (a *Auth) LocalLoginOff() bool { return a.opts.LocalLoginOff }

// oidcState is one sign-in in flight, from the redirect to the provider
// to its callback: kept in memory under its state, bound to the browser
// by a cookie holding the same state, used once.
type oidcState struct {
	nonce, verifier, redirect string
	until                     time.Time
}

const (
	oidcCookie   = "rm_oidc"
	oidcFlowTTL  = 10 * time.Minute
	oidcFlowsMax = 10000
	// OIDCCallbackPath is where the provider sends the browser back.
	OIDCCallbackPath = "/api/v1/auth/oidc/callback"
)

// oidcClient is the provider as discovered; discovery happens at the
// first sign-in and is retried until it works, so a provider that is down
// when the console starts does not keep the console from starting.
type oidcClient struct {
	// discover serialises discovery (which may wait on a slow provider)
	// apart from mu, so the flows stay reachable meanwhile.
	discover sync.Mutex
	provider *oidc.Provider
	mu       sync.Mutex
	flows    map[string]*oidcState
}

func (a *Auth) oidcProvider(ctx context.Context) (*oidc.Provider, error) {
	a.oidc.discover.Lock()
	defer a.oidc.discover.Unlock()
	if a.oidc.provider != nil {
		return a.oidc.provider, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(oidc.ClientContext(ctx, a.oidcHTTP()), a.opts.OIDC.Issuer)
	if err != nil {
		return nil, fmt.Errorf("auth: OpenID provider discovery at %s: %w", a.opts.OIDC.Issuer, err)
	}
	a.oidc.provider = p
	return p, nil
}

// oidcHTTP is the client for the provider's endpoints: bounded, so a
// hung provider cannot hold a sign-in (and its goroutine) for ever.
func (a *Auth) oidcHTTP() *http.Client { return &http.Client{Timeout: 20 * time.Second} }

func (a *Auth) oauthConfig(p *oidc.Provider, redirect string) oauth2.Config {
	c := a.opts.OIDC
	scopes := append([]string{oidc.ScopeOpenID}, c.Scopes...)
	return oauth2.Config{ClientID: c.ClientID, ClientSecret: c.ClientSecret, Endpoint: p.Endpoint(), RedirectURL: redirect, Scopes: scopes}
}

// OIDCError is a sign-in refused for a reason the person can act on (no
// mapped role, a disabled account, a name taken by a local account, the
// provider said no); Status is the HTTP status to answer with.
type OIDCError struct {
	Status int
	Msg    string
}

func (e *OIDCError) Error() string { return e.Msg }

var ErrOIDCOff = errors.New("sign-in with an OpenID provider is not configured")

// BeginOIDC starts a sign-in: it remembers state, nonce and the PKCE
// verifier, sets the state cookie and returns the provider's URL to send
// the browser to. redirect is this console's callback URL.
func (a *Auth) BeginOIDC(ctx context.Context, w http.ResponseWriter, redirect string) (string, error) {
	if a.opts.OIDC == nil {
		return "", ErrOIDCOff
	}
	if a.opts.OIDC.RedirectURL != "" {
		redirect = a.opts.OIDC.RedirectURL
	}
	p, err := a.oidcProvider(ctx)
	if err != nil {
		return "", err
	}
	state, nonce, verifier := token.Random(24), token.Random(24), oauth2.GenerateVerifier()
	now := a.now()
	a.oidc.mu.Lock()
	if a.oidc.flows == nil {
		a.oidc.flows = map[string]*oidcState{}
	}
	for k, f := range a.oidc.flows {
		if now.After(f.until) || len(a.oidc.flows) >= oidcFlowsMax {
			delete(a.oidc.flows, k)
		}
	}
	a.oidc.flows[state] = &oidcState{nonce: nonce, verifier: verifier, redirect: redirect, until: now.Add(oidcFlowTTL)}
	a.oidc.mu.Unlock()
	// Lax: the provider sends the browser back with a top-level GET,
	// which carries a Lax cookie.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: state, Path: "/api/v1/auth/oidc", HttpOnly: true, Secure: a.opts.SecureCookies,
		SameSite: http.SameSiteLaxMode, MaxAge: int(oidcFlowTTL / time.Second)})
	cfg := a.oauthConfig(p, redirect)
	return cfg.AuthCodeURL(state, oidc.Nonce(nonce), oauth2.S256ChallengeOption(verifier)), nil
}

// FinishOIDC completes a sign-in at the callback: it checks the state
// against the browser's cookie, exchanges the code (with the PKCE
// verifier), verifies the ID token and its nonce, maps the roles claim,
// makes or re-maps the user and returns it. The caller starts the session.
func (a *Auth) FinishOIDC(r *http.Request, w http.ResponseWriter) (storage.User, error) {
	if a.opts.OIDC == nil {
		return storage.User{}, ErrOIDCOff
	}
	q := r.URL.Query()
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: "/api/v1/auth/oidc", MaxAge: -1, HttpOnly: true, Secure: a.opts.SecureCookies, SameSite: http.SameSiteLaxMode})
	if e := q.Get("error"); e != "" {
		msg := "The provider refused the sign-in: " + storage.Truncate(e, 100)
		if d := q.Get("error_description"); d != "" {
			msg += " (" + storage.Truncate(d, 300) + ")"
		}
		return storage.User{}, &OIDCError{Status: http.StatusForbidden, Msg: msg}
	}
	state := q.Get("state")
	ck, err := r.Cookie(oidcCookie)
	a.oidc.mu.Lock()
	flow := a.oidc.flows[state]
	delete(a.oidc.flows, state)
	a.oidc.mu.Unlock()
	if state == "" || err != nil || ck.Value != state || flow == nil || a.now().After(flow.until) {
		return storage.User{}, &OIDCError{Status: http.StatusBadRequest, Msg: "This sign-in is unknown or expired (or started in another browser). Start again from the sign-in page."}
	}
	ctx := oidc.ClientContext(r.Context(), a.oidcHTTP())
	p, err := a.oidcProvider(ctx)
	if err != nil {
		return storage.User{}, err
	}
	cfg := a.oauthConfig(p, flow.redirect)
	tok, err := cfg.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(flow.verifier))
	if err != nil {
		return storage.User{}, fmt.Errorf("auth: OpenID code exchange: %w", err)
	}
	raw, ok := tok.Extra("id_token").(string)
	if !ok || raw == "" {
		return storage.User{}, errors.New("auth: OpenID provider answered without an ID token")
	}
	idt, err := p.Verifier(&oidc.Config{ClientID: a.opts.OIDC.ClientID, Now: a.now}).Verify(ctx, raw)
	if err != nil {
		return storage.User{}, fmt.Errorf("auth: OpenID ID token: %w", err)
	}
	if idt.Nonce != flow.nonce {
		return storage.User{}, errors.New("auth: OpenID ID token: nonce mismatch")
	}
	claims := map[string]any{}
	if err := idt.Claims(&claims); err != nil {
		return storage.User{}, fmt.Errorf("auth: OpenID ID token claims: %w", err)
	}
	// Providers put profile claims and often groups only in userinfo when
	// an access token is issued (OIDC Core 5.4): ask it for what the ID
	// token lacks.
	if _, has := claimAt(claims, a.opts.OIDC.RolesClaim); !has || claims["preferred_username"] == nil {
		ui, err := p.UserInfo(ctx, oauth2.StaticTokenSource(tok))
		if err != nil {
			a.log.Warn("OpenID userinfo failed; using the ID token alone", "error", err)
		} else if ui.Subject == idt.Subject {
			extra := map[string]any{}
			if err := ui.Claims(&extra); err == nil {
				for k, v := range extra {
					if _, ok := claims[k]; !ok {
						claims[k] = v
					}
				}
			}
		}
	}
	return a.oidcUser(r, claims, idt.Subject)
}

// oidcUser maps the claims to a user: made at the first sign-in, its role
// re-mapped at every one.
func (a *Auth) oidcUser(r *http.Request, claims map[string]any, subject string) (storage.User, error) {
	name := oidcUserName(claims, subject)
	if !validUserName(name) {
		return storage.User{}, &OIDCError{Status: http.StatusForbidden, Msg: fmt.Sprintf("The provider's user name %q cannot be used here (1-64 letters, digits, '.', '-', '_' or '@'). Ask your administrator.", storage.Truncate(name, 80))}
	}
	values, _ := claimAt(claims, a.opts.OIDC.RolesClaim)
	role := a.mapRole(values)
	audit := func(action, detail string, status int) {
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: action, Detail: detail, Remote: r.RemoteAddr, Status: status})
	}
	a.usersMu.Lock()
	defer a.usersMu.Unlock()
	u, err := a.store.GetUser(name)
	exists := err == nil
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		return storage.User{}, err
	}
	if exists && u.Source != SourceOIDC {
		// A local account of that name (the break-glass admin above all)
		// is never taken over by whoever the provider calls so.
		audit("login refused", "OpenID Connect: a local account has this name", http.StatusForbidden)
		return storage.User{}, &OIDCError{Status: http.StatusForbidden, Msg: fmt.Sprintf("A local account named %q exists, so this sign-in cannot use that name. Ask your administrator.", name)}
	}
	if role == "" {
		detail := fmt.Sprintf("OpenID Connect: no role maps from claim %q (values %v)", a.opts.OIDC.RolesClaim, values)
		audit("login refused", detail, http.StatusForbidden)
		a.log.Warn("OpenID sign-in refused: no mapped role", "user", name, "claim", a.opts.OIDC.RolesClaim, "values", values)
		if exists {
			// The provider took the role away: what the account could do
			// stops now, not at the session's end.
			if _, err := a.store.EndSessions(name, a.now()); err != nil {
				a.log.Warn("ending sessions of an unmapped user failed", "user", name, "error", err)
			}
			if n, err := a.store.DeleteAPITokensOf(name); err != nil || n > 0 {
				a.log.Warn("revoked the tokens of an unmapped user", "user", name, "tokens", n, "error", err)
			}
		}
		return storage.User{}, &OIDCError{Status: http.StatusForbidden, Msg: fmt.Sprintf("Your account %q has no role in restic-manager: the provider's %q claim holds none of the values mapped to admin, operator or viewer. Ask your administrator to add you to the right group.", name, a.opts.OIDC.RolesClaim)}
	}
	if !exists {
		u = storage.User{Name: name, Role: role, CreatedAt: a.now().UTC(), Source: SourceOIDC}
		if err := a.store.CreateUser(u); err != nil {
			return storage.User{}, err
		}
		audit("login", "OpenID Connect: account made with role "+role, http.StatusOK)
		a.log.Info("OpenID sign-in made an account", "user", name, "role", role)
		return u, nil
	}
	if u.Disabled {
		audit("login refused: disabled", "OpenID Connect", http.StatusForbidden)
		return storage.User{}, &OIDCError{Status: http.StatusForbidden, Msg: "This account is disabled. Ask an administrator."}
	}
	if u.Role != role {
		prev := u.Role
		if enabledAdmin(u) && role != RoleAdmin {
			if err := a.otherEnabledAdmin(name); err != nil {
				return storage.User{}, &OIDCError{Status: http.StatusConflict, Msg: err.Error()}
			}
		}
		if u, err = a.store.UpdateUser(name, func(x *storage.User) error { x.Role = role; return nil }); err != nil {
			return storage.User{}, err
		}
		// Other sessions carry the old role's trust: they end.
		if _, err := a.store.EndSessions(name, a.now()); err != nil {
			return storage.User{}, err
		}
		audit("login", fmt.Sprintf("OpenID Connect: role %s → %s", prev, role), http.StatusOK)
		return u, nil
	}
	audit("login", "OpenID Connect", http.StatusOK)
	return u, nil
}

// oidcUserName is the account's name: the provider's preferred user
// name, else the e-mail address, else the subject.
func oidcUserName(claims map[string]any, subject string) string {
	for _, k := range []string{"preferred_username", "email"} {
		if s, ok := claims[k].(string); ok && s != "" {
			return s
		}
	}
	return subject
}

// mapRole is the highest role any of values maps to; "" for none.
func (a *Auth) mapRole(values []string) string {
	c := a.opts.OIDC
	for _, m := range []struct {
		role string
		vals []string
	}{{RoleAdmin, c.AdminValues}, {RoleOperator, c.OperatorValues}, {RoleViewer, c.ViewerValues}} {
		for _, v := range values {
			if slices.Contains(m.vals, v) {
				return m.role
			}
		}
	}
	return ""
}

// claimAt reads a claim of strings (one string or a list) at a dotted
// path. has reports whether the claim is there at all.
func claimAt(claims map[string]any, path string) (values []string, has bool) {
	var cur any = claims
	for part := range strings.SplitSeq(path, ".") {
		m, ok := cur.(map[string]any)
		if !ok {
			return nil, false
		}
		if cur, ok = m[part]; !ok {
			return nil, false
		}
	}
	switch v := cur.(type) {
	case string:
		return []string{v}, true
	case []any:
		for _, x := range v {
			if s, ok := x.(string); ok {
				values = append(values, s)
			}
		}
		return values, true
	}
	return nil, true
}
