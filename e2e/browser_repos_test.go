package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// An admin adds a repository in the browser: the server's refusals show
// next to the fields they name (a missing name, a variable that is not a
// backend's) and mistyped repeats are caught in the page; once saved, the
// password is gone from the page, and the test-connection step runs
// restic snapshots on the real agent, finds no repository at the address,
// offers to initialise it, runs restic init there and tests again. restic
// itself then opens the new repository with the password typed.
func TestBrowserAddRepositoryTestAndInitialise(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	url2 := strings.Replace(f.repoURL, "/repo1/", "/repo2/", 1)
	const pw = "a new repository password, typed twice"

	b := newBrowser(t, f.srv)
	b.login("admin", adminPassword)
	b.step("open the repositories from the nav",
		chromedp.Click(chromedp.CSS(`#nav-repos`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=repos] #repo-form`)),
	)
	if got := b.text(`#repos tr[data-repo="` + f.repoID + `"]`); !strings.Contains(got, "main") || !strings.Contains(got, "web-1") || !strings.Contains(got, "hosts may delete") {
		t.Errorf("the existing repository's row: %q", got)
	}

	// The server's answer by its field: no name.
	b.step("add without a name",
		chromedp.SendKeys(chromedp.CSS(`#repo-form input[name=url]`), url2),
		chromedp.SendKeys(chromedp.CSS(`#repo-form input[name=password]`), pw),
		chromedp.SendKeys(chromedp.CSS(`#repo-form input[name=password_repeat]`), pw),
		chromedp.Click(chromedp.CSS(`#repo-add`)),
		chromedp.WaitVisible(chromedp.CSS(`#repo-form .field-error[data-for=name]`)),
	)
	if got := b.text(`#repo-form .field-error[data-for=name]`); !strings.HasPrefix(got, "name is required") {
		t.Errorf("the name's error: %q", got)
	}
	if !eval[bool](b, `document.querySelector('#repo-form input[name=name]').getAttribute('aria-invalid') === 'true' && document.querySelector('#repo-error').hidden`) {
		t.Error("the name is not marked invalid, or the error is (also) on the form's line")
	}
	// Typing in the field clears its error.
	b.step("type a name", chromedp.SendKeys(chromedp.CSS(`#repo-form input[name=name]`), "second"))
	if n := b.count(`#repo-form .field-error`); n != 0 {
		t.Errorf("%d field errors after typing the name", n)
	}
	// The repeat, checked in the page.
	b.step("mistype the repeat",
		chromedp.SetValue(chromedp.CSS(`#repo-form input[name=password_repeat]`), pw+"x"),
		chromedp.Click(chromedp.CSS(`#repo-add`)),
		chromedp.WaitVisible(chromedp.CSS(`#repo-form .field-error[data-for=password_repeat]`)),
	)
	// A variable that is not a backend's, refused by the API.
	b.step("give a variable restic backends do not read",
		chromedp.SetValue(chromedp.CSS(`#repo-form input[name=password_repeat]`), pw),
		chromedp.SendKeys(chromedp.CSS(`#repo-form textarea[name=env]`), "LD_PRELOAD=/tmp/x.so"),
		chromedp.Click(chromedp.CSS(`#repo-add`)),
		chromedp.WaitVisible(chromedp.CSS(`#repo-form .field-error[data-for=env]`)),
	)
	if got := b.text(`#repo-form .field-error[data-for=env]`); !strings.Contains(got, `"LD_PRELOAD" is not a restic backend variable`) {
		t.Errorf("the environment's error: %q", got)
	}
	b.shot("repos-field-error")
	b.step("add it, bound to web-1",
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#repo-form textarea[name=env]').value = ''`),
		chromedp.Click(chromedp.CSS(`#repo-form input[name=hosts][value="`+f.host.ID+`"]`)),
		chromedp.Click(chromedp.CSS(`#repo-add`)),
		chromedp.WaitVisible(chromedp.CSS(`#repo-test-step`)),
	)
	if got := b.text(`#repo-new-link`); got != "second" {
		t.Errorf("the step names %q", got)
	}
	// No secret in the page after entry: not in its HTML, not in any input.
	if eval[bool](b, `document.documentElement.outerHTML.includes(`+jsString(pw)+`) || Array.from(document.querySelectorAll('input, textarea')).some(i => i.value.includes(`+jsString(pw)+`))`) {
		t.Error("the password is still in the page after the repository was saved")
	}

	// Test: there is no repository there yet; initialise it; test again.
	b.step("test the connection", chromedp.Click(chromedp.CSS(`#repo-test-run`)))
	b.waitJS("the test's failure", `['failed', 'ok'].includes(document.querySelector('#repo-test-result').dataset.outcome) || !document.querySelector('#repo-test-error').hidden`, time.Minute)
	if !eval[bool](b, `!document.querySelector('#repo-init-offer').hidden`) {
		t.Fatalf("no offer to initialise; the test says %q (error %q)", b.text(`#repo-test-result`), b.text(`#repo-test-error`))
	}
	b.shot("repos-add-not-initialised")
	b.step("initialise it", chromedp.Click(chromedp.CSS(`#repo-init-run`)))
	b.waitJS("the test after init", `document.querySelector('#repo-test-result').dataset.outcome === 'ok' || !document.querySelector('#repo-test-error').hidden`, 2*time.Minute)
	if got := b.text(`#repo-test-result`); !strings.HasPrefix(got, "✔ Connected from web-1: 0 snapshots") {
		t.Fatalf("after initialising: %q (error %q)", got, b.text(`#repo-test-error`))
	}
	if n := len(resticSnapshots(t, url2, pw)); n != 0 {
		t.Errorf("restic lists %d snapshots in the new repository", n)
	}
	b.shot("repos-add-connected")

	// The list shows it; its own page (rename, rotate, delete) is a click
	// away, and neither page holds the password.
	b.open("/repos")
	repoID := eval[string](b, `(Array.from(document.querySelectorAll('#repos tr[data-repo]')).find(r => r.textContent.includes('second')) || {dataset: {}}).dataset.repo || ''`)
	if repoID == "" {
		t.Fatal("the new repository is not listed")
	}
	if got := b.text(`#repos tr[data-repo="` + repoID + `"]`); !strings.Contains(got, "web-1") || !strings.Contains(got, "/repo2/") {
		t.Errorf("the new repository's row: %q", got)
	}
	for _, p := range []string{"/repos", "/repos/" + repoID} {
		if eval[bool](b, `fetch(`+jsString(p)+`).then(r => r.text()).then(t => t.includes(`+jsString(pw)+`))`, chromedp.EvalAwaitPromise) {
			t.Errorf("%s shows the password", p)
		}
	}
	b.step("open its page",
		chromedp.Click(chromedp.CSS(`#repos tr[data-repo="`+repoID+`"] a.repo-link`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=repo] #repo-delete`)),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`#repo-delete`)),
		// Deleting returns to the repository list.
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=repos]`)),
	)
	b.open("/repos")
	if n := b.count(`#repos tr[data-repo="` + repoID + `"]`); n != 0 {
		t.Error("the deleted repository is still listed")
	}
}

// What each role sees: everyone lists the repositories, only an admin
// gets "Add a repository" and the integrations and audit pages (the nav
// hides them; opened anyway, the page says the role cannot).
func TestBrowserManagePagesByRole(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	repoID := s.createRepo("main", "rest:http://127.0.0.1:9/main/", "repo-password-1")
	const pw = "a long enough password"
	s.do("POST", "/api/v1/users", map[string]string{"name": "vera", "password": pw, "role": "viewer"}, nil, 201)
	s.do("POST", "/api/v1/users", map[string]string{"name": "olga", "password": pw, "role": "operator"}, nil, 201)
	b := newBrowser(t, s)
	for _, user := range []string{"vera", "olga"} {
		b.login(user, pw)
		if n := b.count(`#nav-integrations, #nav-audit`); n != 0 {
			t.Errorf("%s's nav offers %d admin pages", user, n)
		}
		b.step(user+" opens the repositories",
			chromedp.Click(chromedp.CSS(`#nav-repos`)),
			chromedp.WaitVisible(chromedp.CSS(`#repos tr[data-repo="`+repoID+`"]`)),
		)
		if n := b.count(`#repo-form, #add-repo, #repo-test-step`); n != 0 {
			t.Errorf("%s sees the add-a-repository form", user)
		}
		for _, p := range []string{"/integrations", "/audit"} {
			b.open(p)
			if got := b.text(`#page-error`); !strings.Contains(got, "Your role cannot open this page") {
				t.Errorf("%s on %s: %q", user, p, got)
			}
			if n := b.count(`#channel-form, #mqtt-user-form, #console-settings, #audit-filters, .remove-channel, .remove-mqtt-user`); n != 0 {
				t.Errorf("%s sees %d controls on %s", user, n, p)
			}
		}
		b.step("log out", chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))
	}
	b.login("admin", adminPassword)
	for _, nav := range []string{"#nav-repos", "#nav-integrations", "#nav-audit"} {
		if b.count(nav) != 1 {
			t.Errorf("the admin's nav lacks %s", nav)
		}
	}
}
