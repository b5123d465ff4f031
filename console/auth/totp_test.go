package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/restic-manager/restic-manager/storage"
)

// codeAt is what an authenticator app shows for secret at t.
func codeAt(t *testing.T, secret string, at time.Time) string {
	t.Helper()
	c, err := totp.GenerateCode(secret, at)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func enrolled(t *testing.T, a *Auth, clk *clock) Enrolment {
	t.Helper()
	p := Principal{User: "ops", Role: RoleOperator, Session: true}
	e, err := a.EnrolTOTP(p)
	if err != nil {
		t.Fatal(err)
	}
	if len(e.RecoveryCodes) != 10 || e.Secret == "" || !strings.HasPrefix(e.URL, "otpauth://totp/restic-manager:ops?") {
		t.Fatalf("enrolment %+v", e)
	}
	// Unconfirmed, it changes nothing at login.
	if _, err := a.Login(loginFrom("192.0.2.1:1"), "ops", "right-password"); err != nil {
		t.Fatalf("login before confirming: %v", err)
	}
	if err := a.ConfirmTOTP(loginFrom("192.0.2.1:1"), p, "000000"); !errors.Is(err, ErrWrongCode) && codeAt(t, e.Secret, clk.now()) != "000000" {
		t.Fatalf("confirming with a wrong code: %v", err)
	}
	if err := a.ConfirmTOTP(loginFrom("192.0.2.1:1"), p, codeAt(t, e.Secret, clk.now())); err != nil {
		t.Fatal(err)
	}
	return e
}

// With a confirmed second factor the password alone no longer logs in; a
// current code does, once; the same code again (a replay), a wrong code
// and an old code do not; the next step's code does.
func TestTOTPLogin(t *testing.T) {
	a, _, clk := newAuthWithUser(t)
	e := enrolled(t, a, clk)
	r := loginFrom("192.0.2.1:1")
	if _, err := a.Login(r, "ops", "right-password"); !errors.Is(err, ErrSecondFactorRequired) {
		t.Fatalf("password alone: %v", err)
	}
	// The confirming code's step is used: wait for the next.
	clk.add(30 * time.Second)
	code := codeAt(t, e.Secret, clk.now())
	if u, err := a.SecondFactor(r, "ops", code); err != nil || u.Name != "ops" {
		t.Fatalf("a current code: %v", err)
	}
	if _, err := a.SecondFactor(r, "ops", code); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("the same code again: %v", err)
	}
	wrong := "123456"
	if wrong == code {
		wrong = "654321"
	}
	if _, err := a.SecondFactor(r, "ops", wrong); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("a wrong code: %v", err)
	}
	clk.add(30 * time.Second)
	if _, err := a.SecondFactor(r, "ops", codeAt(t, e.Secret, clk.now().Add(-5*time.Minute))); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("a code five minutes old: %v", err)
	}
	if _, err := a.SecondFactor(r, "ops", codeAt(t, e.Secret, clk.now())); err != nil {
		t.Fatalf("the next step's code: %v", err)
	}
}

// A recovery code works once, whatever its case and dashes; the count
// left goes down.
func TestRecoveryCodeOnce(t *testing.T) {
	a, _, clk := newAuthWithUser(t)
	e := enrolled(t, a, clk)
	r := loginFrom("192.0.2.1:1")
	rc := e.RecoveryCodes[3]
	if _, err := a.SecondFactor(r, "ops", strings.ToUpper(strings.ReplaceAll(rc, "-", ""))); err != nil {
		t.Fatalf("a recovery code: %v", err)
	}
	if _, err := a.SecondFactor(r, "ops", rc); !errors.Is(err, ErrWrongCode) {
		t.Fatalf("the same recovery code again: %v", err)
	}
	if st, _ := a.SecondFactorOf("ops"); st.RecoveryCodesLeft != 9 || !st.Enrolled {
		t.Fatalf("state %+v", st)
	}
}

// Wrong codes lock out like wrong passwords: per address, and per user
// from anywhere.
func TestWrongCodesLockOut(t *testing.T) {
	a, _, clk := newAuthWithUser(t)
	e := enrolled(t, a, clk)
	clk.add(30 * time.Second)
	good := codeAt(t, e.Secret, clk.now())
	for i := range lockAfter {
		// Each from another address: the per-user count still locks.
		_, _ = a.SecondFactor(loginFrom("198.51.100."+string(rune('1'+i))+":1"), "ops", "not-a-code")
	}
	if _, err := a.SecondFactor(loginFrom("192.0.2.200:1"), "ops", good); !errors.Is(err, ErrLocked) {
		t.Fatalf("after %d wrong codes from many addresses: %v", lockAfter, err)
	}
	clk.add(lockBase + time.Minute)
	if _, err := a.SecondFactor(loginFrom("192.0.2.200:1"), "ops", codeAt(t, e.Secret, clk.now())); err != nil {
		t.Fatalf("after the lock: %v", err)
	}
}

// Enrolment is refused to tokens and when a factor is already on; an
// admin's reset lets the user log in with the password and enrol again.
// The QR code is there only while setting up.
func TestSecondFactorResetAndRules(t *testing.T) {
	a, _, clk := newAuthWithUser(t)
	if _, err := a.EnrolTOTP(Principal{User: "ops", Role: RoleOperator}); !errors.Is(err, ErrTokenEnrol) {
		t.Fatalf("enrolling with a token: %v", err)
	}
	sess := Principal{User: "ops", Role: RoleOperator, Session: true}
	if _, err := a.EnrolTOTP(sess); err != nil {
		t.Fatal(err)
	}
	if png, err := a.TOTPQRCode("ops"); err != nil || !strings.HasPrefix(string(png), "\x89PNG") {
		t.Fatalf("QR code while setting up: %d bytes, %v", len(png), err)
	}
	// A second start replaces the unconfirmed one.
	e := enrolled(t, a, clk)
	if _, err := a.TOTPQRCode("ops"); !errors.Is(err, ErrNoEnrolment) {
		t.Fatalf("QR code after confirming: %v", err)
	}
	if _, err := a.EnrolTOTP(sess); !errors.Is(err, ErrSecondFactorEnrolled) {
		t.Fatalf("enrolling again: %v", err)
	}
	_ = e
	if err := a.ResetSecondFactor("ops"); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Login(loginFrom("192.0.2.1:1"), "ops", "right-password"); err != nil {
		t.Fatalf("password login after a reset: %v", err)
	}
	if _, err := a.EnrolTOTP(sess); err != nil {
		t.Fatalf("enrolling after a reset: %v", err)
	}
}

// With the setting on, an operator's session without a second factor may
// only set one up; a viewer's is not affected; with the factor confirmed
// the operator may do everything again.
func TestSecondFactorRequired(t *testing.T) {
	a, st, clk := newAuthWithUser(t)
	hash, _ := HashPassword("viewer-password")
	if err := st.CreateUser(storage.User{Name: "vic", PasswordHash: hash, Role: RoleViewer}); err != nil {
		t.Fatal(err)
	}
	if err := a.SetSecondFactorRequired(true); err != nil {
		t.Fatal(err)
	}
	// The setting survives a restart.
	if !New(Options{Store: st}).SecondFactorRequired() {
		t.Fatal("the setting was not kept")
	}
	h := a.RequireAuth(true)(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusTeapot) }))
	cookieOf := func(user string) *http.Cookie {
		rec := httptest.NewRecorder()
		if err := a.StartSession(rec, user); err != nil {
			t.Fatal(err)
		}
		return rec.Result().Cookies()[0]
	}
	call := func(c *http.Cookie, path string) int {
		r := httptest.NewRequest("GET", path, nil)
		r.AddCookie(c)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, r)
		return rec.Code
	}
	ops, vic := cookieOf("ops"), cookieOf("vic")
	if c := call(ops, "/api/v1/hosts"); c != http.StatusForbidden {
		t.Errorf("an operator without a second factor reading hosts: %d", c)
	}
	if c := call(ops, "/api/v1/me/totp"); c != http.StatusTeapot {
		t.Errorf("an operator without a second factor enrolling: %d", c)
	}
	if c := call(vic, "/api/v1/hosts"); c != http.StatusTeapot {
		t.Errorf("a viewer: %d", c)
	}
	enrolled(t, a, clk)
	if c := call(ops, "/api/v1/hosts"); c != http.StatusTeapot {
		t.Errorf("an operator with a second factor: %d", c)
	}
}
