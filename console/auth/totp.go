package auth

import (
	"bytes"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base32"
	"encoding/hex"
	"errors"
	"fmt"
	"image/png"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/pquerna/otp"
	"github.com/pquerna/otp/totp"

	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// The second factor: TOTP (RFC 6238) with the parameters every
// authenticator app reads from a QR code (SHA-1, six digits, 30 seconds),
// a secret of 160 bits (RFC 4226's recommendation) and ten single-use
// recovery codes. A code is accepted in the step before, at and after the
// server's (clocks drift by seconds, people type slowly) and only once:
// the last accepted step is remembered per user and a code of that step or
// an earlier one is refused (RFC 6238 §5.2).
const (
	totpIssuer     = "restic-manager"
	totpPeriod     = 30
	totpSkew       = 1
	totpSecretSize = 20
	recoveryCount  = 10
	// recoveryBytes: 80 bits per code, sixteen base32 characters: a
	// stolen store's hashes cannot be searched (the password is needed
	// too, but the hash alone must not give the code away).
	recoveryBytes = 10
)

var totpOpts = totp.ValidateOpts{Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1}

var b32 = base32.StdEncoding.WithPadding(base32.NoPadding)

var (
	// ErrSecondFactorRequired: the password was right; the user has a
	// second factor and its code is needed to finish the login.
	ErrSecondFactorRequired = errors.New("a second factor code is required")
	// ErrWrongCode: the code is not the current one, was used already, or
	// is no unused recovery code.
	ErrWrongCode = errors.New("wrong or already used code")
	// ErrSecondFactorEnrolled: the user already has a confirmed second
	// factor; an admin resets it before a new one can be set up.
	ErrSecondFactorEnrolled = errors.New("a second factor is already set up; an admin can reset it")
	// ErrNoEnrolment: confirming or showing a second factor that was not
	// started.
	ErrNoEnrolment = errors.New("no second factor set-up in progress: start one with POST /api/v1/me/totp")
	// errTokenEnrol: second factors are set up from a signed-in session.
	ErrTokenEnrol = errors.New("a second factor is set up from a signed-in session, not with an API token")
)

// Enrolment is a new second factor as shown to its user once: the secret
// (for typing into an app), its otpauth:// URL (the QR code's content) and
// the recovery codes.
type Enrolment struct {
	Secret        string   `json:"secret"`
	URL           string   `json:"otpauth_url"`
	RecoveryCodes []string `json:"recovery_codes"`
}

// SecondFactorState is what a user's second factor looks like to them:
// never the secret.
type SecondFactorState struct {
	Enrolled          bool      `json:"enrolled"` // confirmed: logins ask for a code
	Pending           bool      `json:"pending,omitempty"`
	Since             time.Time `json:"since,omitzero"`
	RecoveryCodesLeft int       `json:"recovery_codes_left"`
}

// SecondFactorOf tells whether and since when user has a second factor.
func (a *Auth) SecondFactorOf(user string) (SecondFactorState, error) {
	sf, err := a.store.GetSecondFactor(user)
	if errors.Is(err, storage.ErrNotFound) {
		return SecondFactorState{}, nil
	}
	if err != nil {
		return SecondFactorState{}, err
	}
	return SecondFactorState{Enrolled: sf.Confirmed, Pending: !sf.Confirmed, Since: sf.ConfirmedAt, RecoveryCodesLeft: len(sf.Recovery)}, nil
}

// EnrolTOTP starts a second factor for the principal's own user: a new
// secret and recovery codes, kept unconfirmed until ConfirmTOTP gets a
// code from it. Starting again before confirming replaces the unconfirmed
// one; once confirmed, ErrSecondFactorEnrolled.
func (a *Auth) EnrolTOTP(p Principal) (Enrolment, error) {
	if !p.Session {
		return Enrolment{}, ErrTokenEnrol
	}
	u, err := a.store.GetUser(p.User)
	if err != nil {
		return Enrolment{}, err
	}
	if u.Source == SourceOIDC {
		return Enrolment{}, input.Errorf("this account signs in through the OpenID provider, whose own second factor applies")
	}
	secret := make([]byte, totpSecretSize)
	rand.Read(secret)
	key, err := totpKey(u.Name, secret)
	if err != nil {
		return Enrolment{}, err
	}
	codes := make([]string, recoveryCount)
	hashes := make([]string, recoveryCount)
	for i := range codes {
		codes[i] = newRecoveryCode()
		hashes[i] = hashRecovery(codes[i])
	}
	sf := storage.SecondFactor{User: u.Name, CreatedAt: a.now().UTC(), Recovery: hashes}
	if err := a.store.PutSecondFactor(sf, secret); err != nil {
		if errors.Is(err, storage.ErrExists) {
			return Enrolment{}, ErrSecondFactorEnrolled
		}
		return Enrolment{}, err
	}
	return Enrolment{Secret: key.Secret(), URL: key.URL(), RecoveryCodes: codes}, nil
}

func totpKey(user string, secret []byte) (*otp.Key, error) {
	key, err := totp.Generate(totp.GenerateOpts{Issuer: totpIssuer, AccountName: user, Secret: secret,
		Period: totpPeriod, Digits: otp.DigitsSix, Algorithm: otp.AlgorithmSHA1})
	if err != nil {
		return nil, fmt.Errorf("auth: totp key: %w", err)
	}
	return key, nil
}

// TOTPQRCode is the PNG of the QR code of user's second factor while it
// is being set up (after confirmation the secret is never shown again).
func (a *Auth) TOTPQRCode(user string) ([]byte, error) {
	sf, err := a.store.GetSecondFactor(user)
	if errors.Is(err, storage.ErrNotFound) || err == nil && sf.Confirmed {
		return nil, ErrNoEnrolment
	}
	if err != nil {
		return nil, err
	}
	secret, err := a.store.SecondFactorSecret(user)
	if err != nil {
		return nil, err
	}
	key, err := totpKey(user, secret)
	if err != nil {
		return nil, err
	}
	img, err := key.Image(256, 256)
	if err != nil {
		return nil, fmt.Errorf("auth: totp QR code: %w", err)
	}
	var buf bytes.Buffer
	if err := png.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("auth: totp QR code: %w", err)
	}
	return buf.Bytes(), nil
}

// ConfirmTOTP turns the principal's second factor on, given a current
// code from it. Wrong codes count towards the same lock-out as logins.
func (a *Auth) ConfirmTOTP(r *http.Request, p Principal, code string) error {
	if !p.Session {
		return ErrTokenEnrol
	}
	now := a.now()
	key := a.codeGuardKey(p.User)
	if a.guard.locked(key, now) {
		return ErrLocked
	}
	_, err := a.store.UpdateSecondFactor(p.User, func(sf *storage.SecondFactor, secret []byte) error {
		if sf.Confirmed {
			return ErrSecondFactorEnrolled
		}
		step, ok := matchTOTP(secret, code, now, sf.LastStep)
		if !ok {
			return ErrWrongCode
		}
		sf.Confirmed, sf.ConfirmedAt, sf.LastStep = true, now.UTC(), step
		return nil
	})
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return ErrNoEnrolment
	case errors.Is(err, ErrWrongCode):
		a.guard.fail(key, now)
		return ErrWrongCode
	case err != nil:
		return err
	}
	a.guard.succeed(key)
	a.log.Info("second factor set up", "user", p.User)
	return nil
}

// ResetSecondFactor removes a user's second factor (an admin's action,
// for a lost phone): the user logs in with the password alone and can set
// up a new one. ErrNotFound if there is none.
func (a *Auth) ResetSecondFactor(name string) error {
	if err := a.store.DeleteSecondFactor(name); err != nil {
		return err
	}
	a.log.Warn("second factor reset", "user", name)
	return nil
}

// codeGuardKey counts wrong second-factor codes per user from anywhere:
// whoever has the password must not get 10^6 guesses by moving address.
func (a *Auth) codeGuardKey(user string) guardKey { return guardKey{user: user, addr: "second factor"} }

// SecondFactor finishes a login whose password was right (Login returned
// ErrSecondFactorRequired): code is a current TOTP code or an unused
// recovery code, each accepted once. Wrong codes count towards the
// lock-out of the address and, separately, of the user.
func (a *Auth) SecondFactor(r *http.Request, name, code string) (storage.User, error) {
	now := a.now()
	addr, _ := httpx.RemoteIP(r)
	addrKey, userKey := guardKey{user: name, addr: addr}, a.codeGuardKey(name)
	if a.guard.locked(addrKey, now) || a.guard.locked(userKey, now) {
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login locked out", Detail: "second factor", Remote: r.RemoteAddr, Status: http.StatusTooManyRequests})
		return storage.User{}, ErrLocked
	}
	code = strings.TrimSpace(code)
	if code == "" || len(code) > 64 {
		return storage.User{}, ErrWrongCode
	}
	recovery := false
	left := 0
	_, err := a.store.UpdateSecondFactor(name, func(sf *storage.SecondFactor, secret []byte) error {
		recovery = false
		if !sf.Confirmed {
			return ErrWrongCode
		}
		if isDigits(code) {
			step, ok := matchTOTP(secret, code, now, sf.LastStep)
			if !ok {
				return ErrWrongCode
			}
			sf.LastStep = step
			return nil
		}
		h := hashRecovery(code)
		for i, have := range sf.Recovery {
			if subtle.ConstantTimeCompare([]byte(have), []byte(h)) == 1 {
				sf.Recovery = append(sf.Recovery[:i:i], sf.Recovery[i+1:]...)
				recovery, left = true, len(sf.Recovery)
				return nil
			}
		}
		return ErrWrongCode
	})
	if err != nil {
		if errors.Is(err, ErrWrongCode) || errors.Is(err, storage.ErrNotFound) {
			a.guard.fail(addrKey, now)
			a.guard.fail(userKey, now)
			a.log.Warn("login failed: wrong second factor code", "user", name, "remote", r.RemoteAddr)
			a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login failed", Detail: "wrong second factor code", Remote: r.RemoteAddr, Status: http.StatusUnauthorized})
			return storage.User{}, ErrWrongCode
		}
		return storage.User{}, err
	}
	u, err := a.store.GetUser(name)
	if err != nil {
		return storage.User{}, err
	}
	if u.Disabled {
		// Disabled between the password and the code.
		a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login refused: disabled", Remote: r.RemoteAddr, Status: http.StatusForbidden})
		return storage.User{}, ErrDisabled
	}
	a.guard.succeed(addrKey)
	a.guard.succeed(userKey)
	detail := "password and TOTP code"
	if recovery {
		detail = fmt.Sprintf("password and a recovery code (%d left)", left)
		a.log.Warn("login with a recovery code", "user", name, "recovery_codes_left", left)
	}
	a.Record(storage.AuditEntry{Actor: name, Kind: "user", Action: "login", Detail: detail, Remote: r.RemoteAddr, Status: http.StatusOK})
	return u, nil
}

// matchTOTP finds the step within the skew whose code is code and which
// is later than last (an earlier or equal step is a replay).
func matchTOTP(secret []byte, code string, now time.Time, last int64) (int64, bool) {
	if len(code) != 6 || !isDigits(code) {
		return 0, false
	}
	enc := b32.EncodeToString(secret)
	cur := now.Unix() / totpPeriod
	for step := cur - totpSkew; step <= cur+totpSkew; step++ {
		want, err := totp.GenerateCodeCustom(enc, time.Unix(step*totpPeriod, 0), totpOpts)
		if err != nil {
			return 0, false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			return step, step > last
		}
	}
	return 0, false
}

func isDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return s != ""
}

// newRecoveryCode is sixteen base32 characters in groups of four.
func newRecoveryCode() string {
	b := make([]byte, recoveryBytes)
	rand.Read(b)
	s := strings.ToLower(b32.EncodeToString(b))
	return s[:4] + "-" + s[4:8] + "-" + s[8:12] + "-" + s[12:16]
}

// hashRecovery hashes a recovery code as typed: case, spaces and dashes
// do not matter.
func hashRecovery(code string) string {
	norm := strings.Map(func(r rune) rune {
		if r == '-' || r == ' ' {
			return -1
		}
		return r
	}, strings.ToLower(code))
	return hex.EncodeToString(token.Hash(norm))
}

// ---- the browser's second step: the password was right, a code is due.

// pendingTTL is how long the second step waits for its code; pendingTries
// is how many wrong codes one password entry allows.
const (
	pendingTTL   = 5 * time.Minute
	pendingTries = 5
	pendingMax   = 10000
	// PendingCookie carries the second step's ticket (path /login only).
	pendingCookie = "rm_login2"
)

type pendingLogin struct {
	user  string
	until time.Time
	tries int
}

type pendingLogins struct {
	mu sync.Mutex
	m  map[string]*pendingLogin // by the ticket's hash
}

// BeginSecondFactor remembers that user gave the right password and sets
// the cookie of the second step. Kept in memory: a restart asks for the
// password again.
func (a *Auth) BeginSecondFactor(w http.ResponseWriter, user string) {
	tok := token.Random(32)
	now := a.now()
	a.pending.mu.Lock()
	if a.pending.m == nil {
		a.pending.m = map[string]*pendingLogin{}
	}
	if len(a.pending.m) >= pendingMax {
		for k, p := range a.pending.m {
			if now.After(p.until) || len(a.pending.m) >= pendingMax {
				delete(a.pending.m, k)
			}
		}
	}
	a.pending.m[hex.EncodeToString(token.Hash(tok))] = &pendingLogin{user: user, until: now.Add(pendingTTL)}
	a.pending.mu.Unlock()
	http.SetCookie(w, &http.Cookie{Name: pendingCookie, Value: tok, Path: "/login", HttpOnly: true, Secure: a.opts.SecureCookies,
		SameSite: http.SameSiteLaxMode, MaxAge: int(pendingTTL / time.Second)})
}

// ErrNoPendingLogin: the second step's ticket is missing, expired or
// used up: enter the password again.
var ErrNoPendingLogin = errors.New("the sign-in expired; enter your password again")

// FinishSecondFactor checks the code of the browser's second step.
func (a *Auth) FinishSecondFactor(w http.ResponseWriter, r *http.Request, code string) (storage.User, error) {
	ck, err := r.Cookie(pendingCookie)
	if err != nil || ck.Value == "" {
		return storage.User{}, ErrNoPendingLogin
	}
	key := hex.EncodeToString(token.Hash(ck.Value))
	now := a.now()
	a.pending.mu.Lock()
	p := a.pending.m[key]
	if p == nil || now.After(p.until) {
		delete(a.pending.m, key)
		a.pending.mu.Unlock()
		return storage.User{}, ErrNoPendingLogin
	}
	user := p.user
	a.pending.mu.Unlock()
	u, err := a.SecondFactor(r, user, code)
	a.pending.mu.Lock()
	defer a.pending.mu.Unlock()
	if err == nil {
		delete(a.pending.m, key)
		http.SetCookie(w, &http.Cookie{Name: pendingCookie, Value: "", Path: "/login", MaxAge: -1, HttpOnly: true, Secure: a.opts.SecureCookies, SameSite: http.SameSiteLaxMode})
		return u, nil
	}
	if p := a.pending.m[key]; p != nil {
		if p.tries++; p.tries >= pendingTries {
			delete(a.pending.m, key)
		}
	}
	return storage.User{}, err
}
