package e2e

import (
	"context"
	"encoding/json"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/cdproto/emulation"
	"github.com/chromedp/cdproto/page"
	"github.com/chromedp/chromedp"
	"github.com/chromedp/chromedp/kb"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// The accessibility checks: every page of the console, signed out and as an
// admin, checked by axe-core (pinned by `make axe`) in the light and the dark
// colour scheme and at phone width, and walked with the Tab key.

// axeViolation is one failed axe rule on a page, with the elements it
// failed on.
type axeViolation struct {
	ID      string   `json:"id"`
	Impact  string   `json:"impact"`
	Help    string   `json:"help"`
	Targets []string `json:"targets"`
}

// installAxe makes every document the tab loads from now on carry axe-core.
func (b *browser) installAxe() {
	b.t.Helper()
	src, err := os.ReadFile(testenv.Axe(b.t))
	if err != nil {
		b.t.Fatalf("read axe-core: %v", err)
	}
	ctx, cancel := context.WithTimeout(b.ctx, stepTimeout)
	defer cancel()
	if _, err := chromedp.Call(ctx, page.AddScriptToEvaluateOnNewDocument, page.AddScriptToEvaluateOnNewDocumentParams{Source: string(src)}); err != nil {
		b.t.Fatalf("install axe-core: %v", err)
	}
}

// colourScheme emulates the system's prefers-color-scheme setting.
func (b *browser) colourScheme(scheme string) {
	b.t.Helper()
	b.step("prefers-color-scheme: "+scheme, chromedp.Func(func(ctx context.Context, t *chromedp.Target) error {
		_, err := chromedp.Call(ctx, emulation.SetEmulatedMedia, emulation.SetEmulatedMediaParams{
			Features: []*emulation.MediaFeature{{Name: "prefers-color-scheme", Value: scheme}}})
		return err
	}))
}

// axe runs axe-core's rules (WCAG 2.x A and AA and its best practices) on
// the page as it is now and returns the violations of every impact.
func (b *browser) axe() []axeViolation {
	b.t.Helper()
	b.waitJS("axe-core in the page", `typeof axe !== 'undefined'`, 10*time.Second)
	raw := eval[string](b, `axe.run(document, {resultTypes: ['violations']}).then(r => JSON.stringify(r.violations.map(v => ({
	  id: v.id, impact: v.impact || '', help: v.help,
	  targets: v.nodes.map(n => n.target.join(' ') + (n.failureSummary ? ' — ' + n.failureSummary.replace(/\s+/g, ' ').slice(0, 160) : '')).slice(0, 6)}))))`,
		chromedp.EvalAwaitPromise)
	var vs []axeViolation
	if err := json.Unmarshal([]byte(raw), &vs); err != nil {
		b.t.Fatalf("axe result: %v", err)
	}
	return vs
}

// checkAxe fails the test on every serious or critical violation of the
// page, naming the rule, the elements and the help text; lesser ones are
// logged.
func (b *browser) checkAxe(where string) {
	b.t.Helper()
	var minor []string
	for _, v := range b.axe() {
		if v.Impact == "serious" || v.Impact == "critical" {
			b.t.Errorf("%s: axe %s (%s): %s\n    %s", where, v.ID, v.Impact, v.Help, strings.Join(v.Targets, "\n    "))
		} else {
			minor = append(minor, v.ID+" ("+v.Impact+")")
		}
	}
	if len(minor) > 0 {
		b.t.Logf("%s: axe, lesser findings: %s", where, strings.Join(minor, ", "))
	}
}

// a11yPage is a page of the console and how to tell it has drawn what its
// script loads.
type a11yPage struct {
	path  string
	ready string // a JavaScript expression, truthy once the page is complete
}

// openForCheck opens a page, waits for it and opens every <details> so that
// the forms they fold away are checked too.
func (b *browser) openForCheck(p a11yPage) {
	b.t.Helper()
	b.open(p.path)
	if p.ready != "" {
		b.waitJS(p.path+" drawn", p.ready, 30*time.Second)
	}
	eval[bool](b, `(() => { document.querySelectorAll('details').forEach(d => d.open = true); return true })()`)
}

// tabWalk presses Tab from the top of the page until the focus leaves the
// page or comes back round to the first control, and returns the controls
// that are shown but were never focused.
func (b *browser) tabWalk(where string) []string {
	b.t.Helper()
	const controls = `a[href], button, input:not([type=hidden]), select, textarea, summary`
	n := eval[int](b, `(() => { document.activeElement && document.activeElement.blur(); window.scrollTo(0, 0); window.__a11yFirst = null;
	  return document.querySelectorAll('`+controls+`').length })()`)
	// A date and time field takes a Tab per part (day, month, year, …).
	for i := 0; i < 3*n+10; i++ {
		b.step(where+": Tab", chromedp.KeyEvent(kb.Tab))
		done := eval[bool](b, `(() => { const e = document.activeElement;
	  if (!e || e === document.body || e === window.__a11yFirst) return true;
	  window.__a11yFirst = window.__a11yFirst || e; e.dataset.a11ySeen = '1'; return false })()`)
		if done {
			break
		}
	}
	return eval[[]string](b, `Array.from(document.querySelectorAll('`+controls+`'))
	  .filter(e => !e.disabled && e.getClientRects().length > 0 && getComputedStyle(e).visibility !== 'hidden' && !e.dataset.a11ySeen)
	  .filter(e => !(e.type === 'radio' && document.querySelector('input[type=radio][name="' + e.name + '"][data-a11y-seen]')))
	  .map(e => e.outerHTML.slice(0, 100))`)
}

func TestA11yEveryPage(t *testing.T) {
	start := time.Now()
	f := newFleet(t, "", "--health-delay=1s")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 20)
	bk := f.run(t, "backup", map[string]any{"paths": []string{src}, "tags": []string{"a11y"}})
	var pol struct{ ID string }
	f.srv.do("POST", "/api/v1/policies", map[string]any{"name": "web servers", "selector": map[string]string{"role": "web"}, "repo_id": f.repoID,
		"schedules": []map[string]any{{"name": "nightly", "kind": "backup", "cron": "30 2 * * *", "enabled": true, "paths": []string{"/srv"}}}}, &pol, 201)
	f.waitSnapshotsListed(t, 1)
	setup := time.Since(start)

	b := newBrowser(t, f.srv)
	b.installAxe()
	pages := []a11yPage{
		{path: "/"},
		{path: "/hosts/" + f.host.ID},
		{path: "/jobs/" + bk.ID},
		{path: "/repos"},
		{path: "/repos/" + f.repoID, ready: `document.querySelectorAll('#snapshot-list tr[data-snapshot]').length > 0`},
		{path: "/restore?repo=" + f.repoID + "&snapshot=" + bk.SnapshotID, ready: `!!document.querySelector('#w-tree button.tree-dir')`},
		{path: "/policies"},
		{path: "/policies/new"},
		{path: "/policies/" + pol.ID},
		{path: "/alerts"},
		{path: "/integrations"},
		{path: "/audit", ready: `document.querySelectorAll('#audit tbody tr').length > 0`},
		{path: "/settings"},
		{path: "/second-factor"},
		{path: "/hosts/no-such-host"}, // the error page
	}
	schemes := []struct {
		name          string
		scheme        string
		width, height int64
	}{
		{"light", "light", 1280, 900},
		{"dark, phone", "dark", 390, 844},
	}

	// Signed out: the login page.
	for _, s := range schemes {
		b.colourScheme(s.scheme)
		b.step("viewport", chromedp.EmulateViewport(s.width, s.height))
		b.openForCheck(a11yPage{path: "/login"})
		b.checkAxe("/login (" + s.name + ")")
	}

	// The checker itself finds what it is there to find: text too faint to
	// read and an input without a label, added to the page for the check.
	eval[bool](b, `(() => { const p = document.createElement('p'); p.textContent = 'faint'; p.style.color = '#c8c8c8'; p.style.background = '#fff';
	  const i = document.createElement('input'); i.id = 'no-label'; document.querySelector('main').append(p, i); return true })()`)
	found := map[string]bool{}
	for _, v := range b.axe() {
		found[v.ID+" "+v.Impact] = true
	}
	if !found["color-contrast serious"] || !found["label critical"] {
		t.Fatalf("axe-core missed a planted contrast and label failure: %v", found)
	}

	b.login("admin", adminPassword)
	checked := 0
	for _, s := range schemes {
		b.colourScheme(s.scheme)
		b.step("viewport", chromedp.EmulateViewport(s.width, s.height))
		if dark := eval[bool](b, `matchMedia('(prefers-color-scheme: dark)').matches`); dark != (s.scheme == "dark") {
			t.Fatalf("%s: the page sees prefers-color-scheme dark=%v", s.name, dark)
		}
		for _, p := range pages {
			b.openForCheck(p)
			where := p.path + " (" + s.name + ")"
			b.checkAxe(where)
			checked++
			if s.width < 500 {
				// Nothing scrolls sideways at phone width: wide content
				// scrolls inside its own box.
				if w := eval[int](b, `document.documentElement.scrollWidth - document.documentElement.clientWidth`); w > 0 {
					t.Errorf("%s: the page is %d px wider than the phone's screen", where, w)
				}
			}
		}
	}
	// The dark theme follows the system setting: the page's own colours
	// change with it.
	b.step("viewport", chromedp.EmulateViewport(1280, 900))
	for _, scheme := range []string{"light", "dark"} {
		b.colourScheme(scheme)
		b.open("/")
		bg := eval[string](b, `getComputedStyle(document.body).backgroundColor`)
		if want := map[string]string{"light": "rgb(250, 251, 252)", "dark": "rgb(18, 22, 29)"}[scheme]; bg != want {
			t.Errorf("%s scheme: body background %s, want %s", scheme, bg, want)
		}
	}
	b.readmeShot("dashboard-dark")

	// The keyboard: the first Tab on a page reaches the skip link, which
	// takes the focus past the navigation to the page's content; from there
	// every control the page shows is reached by Tab alone.
	checksDone := time.Since(start) - setup
	b.colourScheme("light")
	b.step("viewport", chromedp.EmulateViewport(1280, 900))
	b.open("/hosts/" + f.host.ID)
	b.step("Tab", chromedp.KeyEvent(kb.Tab))
	if got := eval[string](b, `document.activeElement.id + ' ' + (document.activeElement.getBoundingClientRect().top >= 0)`); got != "skip-link true" {
		t.Errorf("the first Tab focuses %q, want the skip link, shown", got)
	}
	b.step("Enter on the skip link", chromedp.KeyEvent(kb.Enter))
	if got := eval[string](b, `document.activeElement.tagName`); got != "MAIN" {
		t.Errorf("after the skip link the focus is on %s, want the main content", got)
	}
	b.step("Tab", chromedp.KeyEvent(kb.Tab))
	if inNav := eval[bool](b, `!!document.activeElement.closest('header')`); inNav {
		t.Error("Tab after the skip link went back into the navigation")
	}
	for _, p := range pages {
		b.openForCheck(p)
		if missed := b.tabWalk(p.path); len(missed) > 0 {
			t.Errorf("%s: %d controls shown but never reached with Tab:\n    %s", p.path, len(missed), strings.Join(missed, "\n    "))
		}
	}
	// The main action of a page is among them: "Run now" on the host page.
	b.open("/hosts/" + f.host.ID)
	b.tabWalk("host")
	if eval[string](b, `document.querySelector('#run-submit').dataset.a11ySeen || ''`) != "1" {
		t.Errorf("host page: Run now not reached with Tab")
	}
	t.Logf("%d page checks in %d schemes; setup %s, axe %s, keyboard %s", checked, len(schemes), setup.Round(time.Second), checksDone.Round(time.Second), (time.Since(start) - setup - checksDone).Round(time.Second))
}
