package e2e

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// chromiumPath is where Debian's chromium package puts the browser; `make
// test` installs it (the browser target). Browser tests fail, never skip,
// without it: the console is only tested if they run.
const chromiumPath = "/usr/bin/chromium"

// artifactsDir collects screenshots (git-ignored).
const artifactsDir = "artifacts"

// browser is one headless Chromium driving the console of srv.
type browser struct {
	t   *testing.T
	srv *server
	ctx context.Context // the tab; lives until the test's deadline
}

// browserDeadline bounds a whole browser test; stepTimeout one action.
const (
	browserDeadline = 6 * time.Minute
	stepTimeout     = 90 * time.Second
)

func newBrowser(t *testing.T, srv *server) *browser {
	t.Helper()
	if _, err := os.Stat(chromiumPath); err != nil {
		t.Fatalf("Chromium is not installed at %s (run `make browser`, or apt-get install chromium): %v", chromiumPath, err)
	}
	// The browser's life is bound to this context (chromedp ties it to the
	// first Run), so it is the test's overall deadline; each step gets a
	// shorter one derived from it, which leaves time for a failure
	// screenshot.
	ctx, cancel := context.WithTimeout(context.Background(), browserDeadline)
	// Chromium puts its singleton socket in a directory of its own under
	// TMPDIR and leaves it when killed, as every test's browser is: one
	// per test run stayed in /tmp before. This one is removed below.
	tmp, err := os.MkdirTemp("", "rm-e2e-chromium-")
	if err != nil {
		cancel()
		t.Fatal(err)
	}
	opts := append(chromedp.DefaultExecAllocatorOptions[:],
		chromedp.Env("TMPDIR="+tmp),
		chromedp.ExecPath(chromiumPath),
		chromedp.NoSandbox, // root in CI; the sandbox refuses to start as root
		// Without these Chromium keeps reaching for outside hosts, which
		// this machine refuses.
		chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true),
		// The server's certificate comes from its own generated CA. Only
		// this test browser skips the check; the Go clients pin the CA.
		chromedp.Flag("ignore-certificate-errors", true),
		chromedp.WindowSize(1280, 900),
	)
	actx, cancelA := chromedp.NewExecAllocator(ctx, opts...)
	bctx, cancelB := chromedp.NewContext(actx)
	if err := chromedp.Do(bctx); err != nil {
		cancelB()
		cancelA()
		cancel()
		_ = os.RemoveAll(tmp)
		t.Fatalf("start Chromium: %v", err)
	}
	b := &browser{t: t, srv: srv, ctx: bctx}
	t.Cleanup(func() {
		if t.Failed() {
			b.shot(safeName(t.Name()) + "-failure")
		}
		cancelB()
		cancelA()
		cancel()
		_ = os.RemoveAll(tmp)
	})
	return b
}

func safeName(s string) string {
	return strings.NewReplacer("/", "_", " ", "_").Replace(s)
}

// step runs void actions with the step timeout and fails the test with what.
func (b *browser) step(what string, actions ...chromedp.Action[chromedp.Void]) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if err := chromedp.Do(ctx, actions...); err != nil {
		b.t.Fatalf("%s: %v", what, err)
	}
}

// eval runs a JavaScript expression in the page and returns its value.
func eval[T any](b *browser, expr string, opts ...chromedp.EvaluateOption) T {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr, opts...))
	if err != nil {
		b.t.Fatalf("evaluate %s: %v", expr, err)
	}
	return v
}

// waitJS waits until a JavaScript expression is truthy: the page's own
// state, never a fixed sleep.
func (b *browser) waitJS(what, expr string, timeout time.Duration) {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, timeout+5*time.Second)
	defer cancel()
	if _, err := chromedp.Run(ctx, chromedp.Poll[chromedp.Void](expr, chromedp.WithPollingTimeout(timeout), chromedp.WithPollingInterval(100*time.Millisecond))); err != nil {
		b.t.Fatalf("waiting for %s (%s): %v", what, expr, err)
	}
}

func (b *browser) text(sel string) string {
	b.t.Helper()
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	// TextContent, not Text: rows the page hides until they have a value
	// are still read.
	s, err := chromedp.Run(ctx, chromedp.TextContent(chromedp.CSS(sel)))
	if err != nil {
		b.t.Fatalf("text of %s: %v", sel, err)
	}
	return strings.TrimSpace(s)
}

// count is how many elements match a CSS selector right now.
func (b *browser) count(sel string) int {
	b.t.Helper()
	return eval[int](b, `document.querySelectorAll(`+jsString(sel)+`).length`)
}

func jsString(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`, "\n", `\n`).Replace(s) + "'"
}

// open navigates to a console path and waits for its main element.
func (b *browser) open(path string) {
	b.t.Helper()
	b.step("open "+path, chromedp.Navigate(b.srv.URL(path)), chromedp.WaitReady(chromedp.CSS("main")))
}

// login signs in through the login form.
func (b *browser) login(user, password string) {
	b.t.Helper()
	b.step("log in as "+user,
		chromedp.Navigate(b.srv.URL("/login")),
		chromedp.WaitVisible(chromedp.CSS(`input[name=username]`)),
		chromedp.SendKeys(chromedp.CSS(`input[name=username]`), user),
		chromedp.SendKeys(chromedp.CSS(`input[name=password]`), password),
		chromedp.Click(chromedp.CSS(`#login-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=dashboard]`)),
	)
}

// shot saves a full-page screenshot as artifacts/name.png and returns its path.
func (b *browser) shot(name string) string {
	ctx, cancel := context.WithTimeout(b.ctx, 20*time.Second)
	defer cancel()
	png, err := chromedp.Run(ctx, chromedp.FullScreenshot(100))
	if err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	_ = os.MkdirAll(artifactsDir, 0o755)
	p := filepath.Join(artifactsDir, name+".png")
	if err := os.WriteFile(p, png, 0o644); err != nil {
		b.t.Logf("screenshot %s: %v", name, err)
		return ""
	}
	abs, _ := filepath.Abs(p)
	b.t.Logf("screenshot: %s", abs)
	return abs
}

// readmeShot saves a screenshot as shot does and, with RM_SCREENSHOTS=1
// (`make screenshots`), also as docs/screenshots/name.png, the images the
// README shows.
func (b *browser) readmeShot(name string) {
	b.t.Helper()
	p := b.shot(name)
	if os.Getenv("RM_SCREENSHOTS") != "1" || p == "" {
		return
	}
	png, err := os.ReadFile(p)
	if err == nil {
		err = os.WriteFile(filepath.Join("..", "docs", "screenshots", name+".png"), png, 0o644)
	}
	if err != nil {
		b.t.Errorf("README screenshot %s: %v", name, err)
	}
}
