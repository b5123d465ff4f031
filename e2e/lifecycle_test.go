package e2e

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// TestRepositoryLifecycle: an admin, in the browser, tests a repository's
// connection (a real agent runs restic snapshots), rotates its password
// (restic key passwd through the agent), edits it and is refused deleting
// it while a schedule uses it. restic itself then opens the repository
// with the new password only, and the next backup through the console
// works with the password the console now seals.
func TestRepositoryLifecycle(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 20)
	f.run(t, "backup", map[string]any{"paths": []string{src}})

	b := newBrowser(t, f.srv)
	b.login("admin", adminPassword)
	b.open("/repos/" + f.repoID)
	b.step("test the connection", chromedp.Click(chromedp.CSS(`#test-connection`)))
	b.waitJS("the connection test's answer", `document.querySelector('#test-result').textContent.includes('connected') || !document.querySelector('#test-error').hidden`, time.Minute)
	if got := b.text(`#test-result`); !strings.Contains(got, "connected from "+f.host.ID+": 1 snapshots") {
		t.Errorf("connection test shows %q (error %q)", got, b.text(`#test-error`))
	}

	// Rotate: mismatched repeats are caught in the page, then the job runs.
	const newPw = "the rotated password of " + "e2e"
	b.step("rotate with a typo",
		chromedp.SendKeys(chromedp.CSS(`#rotate-password`), newPw),
		chromedp.SendKeys(chromedp.CSS(`#rotate-repeat`), newPw+"x"),
		chromedp.Click(chromedp.CSS(`#rotate-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#rotate-error`)),
	)
	b.step("rotate",
		chromedp.SetValue(chromedp.CSS(`#rotate-repeat`), newPw),
		chromedp.Click(chromedp.CSS(`#rotate-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=job]`)),
	)
	jobID := eval[string](b, `document.querySelector('#job').dataset.jobId`)
	j := f.srv.waitJob(jobID, 2*time.Minute)
	if j.Status != "succeeded" || j.Kind != "rotate_key" {
		t.Fatalf("rotation job: %s %s: %s %s", j.Kind, j.Status, j.Error, j.StderrTail)
	}
	if snaps := resticSnapshots(t, f.repoURL, newPw); len(snaps) != 1 {
		t.Errorf("restic with the new password: %d snapshots, want 1", len(snaps))
	}
	if out, err := resticTry(t, f.repoURL, f.password, "snapshots"); err == nil || !strings.Contains(out, "wrong password") {
		t.Errorf("restic with the old password: %v %s", err, out)
	}
	// The console seals the new password from now on.
	f.run(t, "backup", map[string]any{"paths": []string{src}})
	if snaps := resticSnapshots(t, f.repoURL, newPw); len(snaps) != 2 {
		t.Errorf("after a backup: %d snapshots, want 2", len(snaps))
	}
	b.open("/repos/" + f.repoID)
	if got := b.text(`#password-state`); !strings.Contains(got, "rotated") {
		t.Errorf("password state %q", got)
	}
	for _, secret := range []string{newPw, f.password} {
		if html := eval[string](b, `document.documentElement.outerHTML`); strings.Contains(html, secret) {
			t.Errorf("the repository page shows a password")
		}
	}

	// Rename in the page; deleting is refused while a schedule uses it.
	f.srv.putSchedules(f.host.ID, []map[string]any{{"name": "nightly", "kind": "backup", "repo_id": f.repoID,
		"cron": "0 3 * * *", "enabled": true, "paths": []string{src}}})
	b.step("rename",
		chromedp.Evaluate[chromedp.Void](`window.beforeReload = true`),
		chromedp.SetValue(chromedp.CSS(`#edit-name`), "renamed"),
		chromedp.Click(chromedp.CSS(`#repo-edit button[type=submit]`)),
	)
	// The page reloads itself after the change: wait for the new page
	// (evaluations fail while it navigates, so errors only mean "not yet").
	deadline := time.Now().Add(30 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(b.ctx, 2*time.Second)
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](`!window.beforeReload && document.readyState === "complete" && document.querySelector("h1").textContent.includes("renamed")`))
		cancel()
		if err == nil && ok {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page after the rename: %v", err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	b.step("delete", chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`), chromedp.Click(chromedp.CSS(`#repo-delete`)),
		chromedp.WaitVisible(chromedp.CSS(`#edit-error`)))
	if got := b.text(`#edit-error`); !strings.Contains(got, `schedule "nightly"`) {
		t.Errorf("delete refusal shows %q", got)
	}
}

// resticTry runs restic and returns its combined output and error.
func resticTry(t testing.TB, repoURL, password string, args ...string) (string, error) {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	out, err := exec.CommandContext(ctx, testenv.Restic(t), append([]string{"-r", repoURL, "--password-file", pw, "--no-cache"}, args...)...).CombinedOutput()
	return string(out), err
}
