package e2e

import (
	"context"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/pquerna/otp/totp"

	"github.com/restic-manager/restic-manager/internal/harness"
)

// passwordStep fills the login form; with a second factor the page then
// asks for the code.
func (b *browser) passwordStep(user, password string) {
	b.t.Helper()
	b.step("password of "+user,
		chromedp.Navigate(b.srv.URL("/login")),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#code-form input[name=code]`)),
	)
}

// codeStep enters a code on the second step and waits for the dashboard
// (ok) or for the step's error.
func (b *browser) codeStep(code string, ok bool) string {
	b.t.Helper()
	wait := chromedp.WaitVisible(chromedp.CSS(`main[data-page=dashboard]`))
	if !ok {
		wait = chromedp.WaitVisible(chromedp.CSS(`#code-form .error`))
	}
	b.step("enter code",
		// Marks this page, so the wait below sees the answer's page and
		// not the error this one may already show.
		chromedp.Evaluate[chromedp.Void](`document.body.setAttribute('data-before-submit', '1')`),
		chromedp.SendKeys(chromedp.CSS(`#code-form input[name=code]`), code),
		chromedp.Click(chromedp.CSS(`#code-form button[type=submit]`)),
		chromedp.WaitNotPresent(chromedp.CSS(`body[data-before-submit]`)),
		wait,
	)
	if ok {
		return ""
	}
	return b.text(`#code-form .error`)
}

func (b *browser) logout() {
	b.t.Helper()
	b.step("log out", chromedp.Click(chromedp.CSS(`form[action="/logout"] button`)), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))
}

// A person sets up TOTP on the second-factor page (QR code rendered by the
// server, secret and ten recovery codes shown once) and confirms it with a
// code the test computes from the secret. From then on the login asks for
// a code after the password: a current code works; the same code again (a
// replay) and a wrong code are refused with a message; a recovery code
// works once. An admin resets the factor from the settings page and the
// password alone works again. The settings page lists tokens with their
// expiry and last use.
func TestSignInTOTPBrowser(t *testing.T) {
	// Every step is a sign-in: more than the default 10 a minute.
	srv := newServer(t, "--login-rate=200")
	ctx := context.Background()
	const alicePW = "alice-password-long"
	srv.do("POST", "/api/v1/users", map[string]string{"name": "alice", "password": alicePW, "role": "operator"}, nil, 201)
	b := newBrowser(t, srv)

	b.login("alice", alicePW)
	b.open("/second-factor")
	if s := b.text("#sf-state"); !strings.Contains(s, "off") {
		t.Fatalf("second factor state before: %q", s)
	}
	b.step("set up", chromedp.Click(chromedp.CSS(`#sf-start`)), chromedp.WaitVisible(chromedp.CSS(`#sf-enrol`)))
	b.waitJS("the QR code PNG", `(() => { const i = document.querySelector('#sf-qr'); return i.complete && i.naturalWidth === 256; })()`, 30*time.Second)
	secret := b.text("#sf-secret")
	if n := b.count("#sf-codes li"); n != 10 || secret == "" {
		t.Fatalf("secret %q, %d recovery codes", secret, n)
	}
	recovery := b.text("#sf-codes li:first-child code")
	now := time.Now()
	code, err := totp.GenerateCode(secret, now)
	if err != nil {
		t.Fatal(err)
	}
	b.step("confirm", chromedp.SendKeys(chromedp.CSS(`#sf-confirm input[name=code]`), code),
		chromedp.Click(chromedp.CSS(`#sf-confirm button[type=submit]`)), chromedp.WaitVisible(chromedp.CSS(`#sf-recovery-left`)))
	if s := b.text("#sf-state"); !strings.Contains(s, "is on") {
		t.Fatalf("second factor state after: %q", s)
	}
	b.logout()

	// The password alone now leads to the code step. The confirming code's
	// time step is used up: the next step's code (accepted within the
	// one-step skew) is the first one that works.
	b.passwordStep("alice", alicePW)
	next, _ := totp.GenerateCode(secret, now.Add(30*time.Second))
	b.codeStep(next, true)
	b.logout()

	b.passwordStep("alice", alicePW)
	if msg := b.codeStep(next, false); !strings.Contains(msg, "already used") {
		t.Errorf("a replayed code: %q", msg)
	}
	wrong := "000000"
	for _, c := range []string{code, next} {
		if c == wrong {
			wrong = "999999"
		}
	}
	if msg := b.codeStep(wrong, false); !strings.Contains(msg, "Wrong") {
		t.Errorf("a wrong code: %q", msg)
	}
	b.codeStep(recovery, true)
	b.logout()
	b.passwordStep("alice", alicePW)
	if msg := b.codeStep(recovery, false); !strings.Contains(msg, "Wrong or already used") {
		t.Errorf("a recovery code used twice: %q", msg)
	}
	// The API says the same.
	api := harness.NewSessionClient(srv.URL(""), &http.Transport{TLSClientConfig: srv.TLSConfig()})
	if err := api.Expect(ctx, "POST", "/api/v1/login", map[string]string{"username": "alice", "password": alicePW}, nil, 401); err != nil {
		t.Error(err)
	}
	if err := api.Expect(ctx, "POST", "/api/v1/login", map[string]string{"username": "alice", "password": alicePW, "totp_code": recovery}, nil, 401); err != nil {
		t.Error(err)
	}

	// A token used once shows its expiry and last use.
	tok, err := srv.API.NewToken(ctx, "dashboards")
	srv.check(err)
	tc := &harness.Client{Base: srv.URL(""), HTTP: &http.Client{Transport: &http.Transport{TLSClientConfig: srv.TLSConfig()}}, Token: tok}
	srv.check(tc.Expect(ctx, "GET", "/api/v1/hosts", nil, nil, 200))

	// The admin resets alice's second factor from the settings page.
	b.login("admin", adminPassword)
	b.open("/settings")
	row := `#tokens tbody tr:first-child`
	if used, exp := b.text(row+` .token-used`), b.text(row+` td:nth-child(5)`); used != "just now" || !strings.Contains(exp, time.Now().Add(90*24*time.Hour).Format("2006-01-02")) {
		t.Errorf("the used token's row: last used %q, expires %q", used, exp)
	}
	b.step("reset alice's second factor",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`#users tr[data-user="alice"] .reset-second-factor`)),
		// The page reloads showing the factor off.
		chromedp.WaitNotPresent(chromedp.CSS(`#users tr[data-user="alice"] .reset-second-factor`)),
		chromedp.WaitVisible(chromedp.CSS(`#users tr[data-user="alice"] .user-sf`)))
	if s := b.text(`#users tr[data-user="alice"] .user-sf`); s != "off" {
		t.Errorf("alice's second factor after the reset: %q", s)
	}
	// The admin requires a second factor for admins and operators: alice
	// (an operator, her factor reset) signs in with the password alone and
	// is sent to set one up, whatever page she asks for.
	b.step("require a second factor", chromedp.Click(chromedp.CSS(`#require-second-factor`)))
	// The admin has none either: from now on the admin's own session is
	// sent to set one up too.
	eventually(t, 30*time.Second, "the setting", func() error {
		var set struct {
			Required bool `json:"second_factor_required"`
		}
		if err := tc.Do(ctx, "GET", "/api/v1/settings/sign-in", nil, &set); err != nil {
			return err
		}
		if !set.Required {
			return errorf("not required yet")
		}
		return nil
	})
	b.step("the admin's next page", chromedp.Navigate(b.srv.URL("/settings")), chromedp.WaitVisible(chromedp.CSS(`#sf-required`)))
	b.logout()
	b.step("alice's password, then the set-up page",
		chromedp.Navigate(b.srv.URL("/login")),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), "alice"),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), alicePW),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#sf-required`)))
	b.step("another page", chromedp.Navigate(b.srv.URL("/settings")), chromedp.WaitVisible(chromedp.CSS(`#sf-required`)))
	if s := b.text("#sf-required"); !strings.Contains(s, "needs a second factor") {
		t.Errorf("the set-up page says %q", s)
	}
}
