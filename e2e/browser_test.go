package e2e

import (
	"bytes"
	"fmt"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// These tests drive the web console in a real headless Chromium against
// real server, agent, restic and rest-server processes.

// waitSnapshotsListed waits until the console's cached snapshot list of the
// fleet's repository holds n snapshots (it is refreshed by health reports).
func (f *fleet) waitSnapshotsListed(t testing.TB, n int) {
	t.Helper()
	eventually(t, 2*time.Minute, "snapshot list", func() error {
		var snaps []map[string]any
		f.srv.do("GET", "/api/v1/repos/"+f.repoID+"/snapshots", nil, &snaps, 200)
		if len(snaps) < n {
			return errorf("%d snapshots listed", len(snaps))
		}
		return nil
	})
}

func TestBrowserDashboardAndLiveBackup(t *testing.T) {
	f := newFleet(t, "", "--health-delay=1s")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	b := newBrowser(t, f.srv)

	// Log in through the form; the dashboard shows the host online.
	b.login("admin", adminPassword)
	row := `#hosts tr[data-host="` + f.host.ID + `"]`
	if n := b.count(row + ` .host-online`); n != 1 {
		t.Fatalf("dashboard: host %s not shown online (%d)", f.host.ID, n)
	}
	if got := b.text("#count-offline"); got != "0" {
		t.Errorf("offline count %q, want 0", got)
	}

	// Adding a host shows its one-line installer with the one-time token
	// and the CA fingerprint.
	b.step("add a host", chromedp.Click(chromedp.CSS(`#add-host summary`)),
		chromedp.SendKeys(chromedp.CSS(`#add-host-form input[name=name]`), "laptop-1"),
		chromedp.Click(chromedp.CSS(`#add-host-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#add-host-result`)))
	if line := b.text("#install-linux"); !strings.Contains(line, "install.sh") || !strings.Contains(line, "--token rme_") || !strings.Contains(line, "--ca-fingerprint "+f.srv.CAFingerprint) {
		t.Errorf("install line %q", line)
	}
	// "Add hosts" also makes an enrolment key, with the line that enrols
	// any number of machines under the key's labels.
	b.step("make an enrolment key",
		chromedp.SendKeys(chromedp.CSS(`#enroll-key-form input[name=name]`), "web rollout"),
		chromedp.SendKeys(chromedp.CSS(`#enroll-key-form input[name=labels]`), "role=web"),
		chromedp.Click(chromedp.CSS(`#enroll-key-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#enroll-key-new`)))
	if line := b.text("#enroll-key-linux"); !strings.Contains(line, "--key rmk_") || !strings.Contains(line, "--ca-fingerprint "+f.srv.CAFingerprint) {
		t.Errorf("key install line %q", line)
	}
	if w := b.text("#enroll-key-windows"); !strings.Contains(w, "rmk_") {
		t.Errorf("key install line for Windows %q", w)
	}

	// Start a backup from the host page. restic's percentage counts files
	// read, and 40,000 small files take it a few seconds: several progress
	// reports (one per 500 ms) reach the page.
	src := makeTree(t, 40000)
	b.step("open the host page", chromedp.Click(chromedp.CSS(row+` a.host-link`)), chromedp.WaitVisible(chromedp.CSS(`#run-form`)))

	// The schedule editor: a live preview of the cron expression, then
	// saved through the API; the list shows it with its next runs.
	b.step("fill in a schedule",
		chromedp.Click(chromedp.CSS(`#schedule-editor-box summary`)),
		chromedp.SendKeys(chromedp.CSS(`#schedule-editor input[name=name]`), "nightly"),
		chromedp.SendKeys(chromedp.CSS(`#schedule-editor input[name=cron]`), "30 2 * * *"),
		chromedp.SendKeys(chromedp.CSS(`#schedule-editor textarea[name=paths]`), src),
	)
	b.waitJS("the cron preview", `document.querySelector('#cron-preview').textContent.includes('every day at 02:30')`, 10*time.Second)
	b.step("save the schedule", chromedp.Click(chromedp.CSS(`#schedule-save`)), chromedp.WaitVisible(chromedp.CSS(`#schedule-list tr[data-schedule]`)))
	if got := b.text(`#schedule-list tr[data-schedule]`); !strings.Contains(got, "every day at 02:30") || !strings.Contains(got, "nightly") {
		t.Errorf("schedule row: %q", got)
	}
	if n := b.count(`#schedule-list tr[data-schedule] td.sub br`); n != 5 {
		t.Errorf("schedule shows %d next runs, want 5", n)
	}
	b.readmeShot("host")
	if n := eval[int](b, `Array.from(document.querySelectorAll('#run-form fieldset')).filter(f => f.offsetParent !== null).length`); n != 1 {
		t.Errorf("run form shows %d argument sections, want only the selected operation's", n)
	}
	// An invalid expression is refused with the reason, on the page.
	b.step("save a bad schedule",
		chromedp.Click(chromedp.CSS(`.edit-schedule`)),
		chromedp.SetValue(chromedp.CSS(`#schedule-editor input[name=cron]`), "61 * * * *"),
		chromedp.Click(chromedp.CSS(`#schedule-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#schedule-error`)),
	)
	if msg := b.text("#schedule-error"); !strings.Contains(msg, "61") {
		t.Errorf("schedule error %q does not say what is wrong", msg)
	}
	b.step("start a backup",
		chromedp.SetValue(chromedp.CSS(`#run-kind`), "backup"),
		chromedp.SendKeys(chromedp.CSS(`#run-paths`), src),
		chromedp.Click(chromedp.CSS(`#run-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=job]`)),
	)
	jobID := eval[string](b, `document.querySelector('#job').dataset.jobId`)
	// Mark this document and record every percentage the page shows: a
	// reload would drop the mark, and live updates change the text.
	eval[bool](b, `(() => { window.__samePage = true; window.__seen = new Set([document.querySelector('#progress-percent').textContent]);
	  new MutationObserver(() => window.__seen.add(document.querySelector('#progress-percent').textContent))
	    .observe(document.querySelector('#progress'), {subtree: true, childList: true, characterData: true}); return true })()`)
	b.waitJS("a running backup with progress", `document.querySelector('#job-status').textContent === 'running' && window.__seen.size >= 2`, 2*time.Minute)
	b.readmeShot("job-running")
	b.waitJS("the backup to end", `['succeeded','failed','partial','cancelled','expired'].includes(document.querySelector('#job-status').textContent)`, 3*time.Minute)
	if st := b.text("#job-status"); st != "succeeded" {
		t.Fatalf("job %s ended %s on the page: %s", jobID, st, b.text("#job-error"))
	}
	if !eval[bool](b, `window.__samePage === true`) {
		t.Fatal("the job page reloaded; it should update in place")
	}
	seen := eval[[]string](b, `Array.from(window.__seen)`)
	if len(seen) < 3 {
		t.Errorf("progress shown: %v, want several distinct values", seen)
	}
	j := f.srv.job(jobID)
	if j.Status != "succeeded" || j.SnapshotID == "" {
		t.Fatalf("API: job %s %s snapshot %q", jobID, j.Status, j.SnapshotID)
	}
	if got := b.text("#snapshot-id"); got != j.SnapshotID {
		t.Errorf("page shows snapshot %q, API %q", got, j.SnapshotID)
	}
	if got := b.text("#data-added"); got == "—" || got == "" {
		t.Errorf("data added not shown: %q", got)
	}
	if got := b.text("#progress-percent"); got != "100.0 %" {
		t.Errorf("final percent %q", got)
	}
	// (Not necessarily increasing: restic's percentage can dip while its
	// scanner is still counting the files.)
	t.Logf("percentages shown live: %v", seen)
	b.shot("job")

	// Back on the dashboard: the backup, its age and the repository.
	f.waitSnapshotsListed(t, 1)
	b.open("/")
	if got := b.text(row + ` td.age-ok .age`); got == "" {
		t.Errorf("dashboard: last backup age not shown green")
	}
	if n := b.count(row + ` a[href="/jobs/` + jobID + `"]`); n == 0 {
		t.Errorf("dashboard: no link to the last backup")
	}
	b.readmeShot("dashboard")

	// Phone width: no page scrolls sideways (wide tables scroll inside
	// their own box).
	b.step("phone viewport", chromedp.EmulateViewport(390, 844))
	for _, page := range []string{"/", "/hosts/" + f.host.ID, "/jobs/" + jobID, "/repos/" + f.repoID, "/restore", "/settings"} {
		b.open(page)
		if w := eval[int](b, `document.documentElement.scrollWidth - window.innerWidth`); w > 0 {
			t.Errorf("%s at phone width overflows by %d px", page, w)
		}
	}
	b.open("/")
	b.shot("dashboard-phone")
}

func TestBrowserRestoreWizardToAnotherHost(t *testing.T) {
	f := newFleet(t, "", "--health-delay=1s")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 30)
	bk := f.run(t, "backup", map[string]any{"paths": []string{src}})
	if err := os.WriteFile(filepath.Join(src, "d05", "added-later.txt"), []byte("later\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	f.run(t, "backup", map[string]any{"paths": []string{src}})

	other := f.srv.createHost("restore-target")
	f.srv.bindHosts(f.repoID, other.ID)
	a2 := enrollAgent(t, f.srv, other.EnrollToken, testenv.Restic(t))
	a2.start(t)
	f.srv.waitOnline(other.ID, true)
	f.waitSnapshotsListed(t, 2)

	b := newBrowser(t, f.srv)
	b.login("admin", adminPassword)
	b.open("/restore")
	b.step("pick the repository and the snapshot",
		chromedp.SetValue(chromedp.CSS(`#w-repo`), f.repoID),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#w-repo').dispatchEvent(new Event('change'))`),
		chromedp.Click(chromedp.CSS(`button.pick-snapshot[data-id="`+bk.SnapshotID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#w-tree`)),
	)
	// Walk down to the backed-up folder, one level at a time (the first
	// folder may wait for the snapshot's index).
	dir := ""
	for _, part := range strings.Split(strings.Trim(src, "/"), "/") {
		dir += "/" + part
		b.step("open "+dir, chromedp.Click(chromedp.CSS(`button.tree-dir[data-path="`+dir+`"]`)))
	}
	pick := func(folder, file string) {
		b.step("select "+file,
			chromedp.Click(chromedp.CSS(`button.tree-dir[data-path="`+src+"/"+folder+`"]`)),
			chromedp.Click(chromedp.CSS(`input.pick[value="`+src+"/"+folder+"/"+file+`"]`)),
			chromedp.Click(chromedp.CSS(`#w-crumbs a[data-path="`+src+`"]`)),
			chromedp.WaitVisible(chromedp.CSS(`button.tree-dir[data-path="`+src+"/d00"+`"]`)),
		)
	}
	pick("d01", "f0001.txt")
	pick("d03", "f0023.txt")
	b.readmeShot("restore-browse")
	if got := b.text("#w-sel-count"); got != "2" {
		t.Fatalf("selection holds %s entries, want 2", got)
	}
	target := t.TempDir()
	b.step("choose another host and a folder",
		chromedp.Click(chromedp.CSS(`#w-to-3`)),
		chromedp.Click(chromedp.CSS(`input[name=w-target][value=otherhost]`)),
		chromedp.SetValue(chromedp.CSS(`#w-host`), other.ID),
		chromedp.SendKeys(chromedp.CSS(`#w-path`), target),
		chromedp.Click(chromedp.CSS(`#w-to-4`)),
		chromedp.WaitVisible(chromedp.CSS(`#w-review`)),
	)
	review := b.text("#w-review")
	for _, want := range []string{src + "/d01/f0001.txt", src + "/d03/f0023.txt", "restore-target", target} {
		if !strings.Contains(review, want) {
			t.Errorf("review lacks %q:\n%s", want, review)
		}
	}
	b.step("run the restore", chromedp.Click(chromedp.CSS(`#w-run`)), chromedp.WaitVisible(chromedp.CSS(`main[data-page=job]`)))
	b.waitJS("the restore to end", `['succeeded','failed','partial','cancelled','expired'].includes(document.querySelector('#job-status').textContent)`, 3*time.Minute)
	if st := b.text("#job-status"); st != "succeeded" {
		t.Fatalf("restore ended %s: %s", st, b.text("#job-error"))
	}
	jobID := eval[string](b, `document.querySelector('#job').dataset.jobId`)
	if j := f.srv.job(jobID); j.HostID != other.ID {
		t.Fatalf("restore ran on %s, want %s", j.HostID, other.ID)
	}
	for _, rel := range []string{"d01/f0001.txt", "d03/f0023.txt"} {
		want, _ := os.ReadFile(filepath.Join(src, rel))
		got, err := os.ReadFile(filepath.Join(target, src, rel))
		if err != nil || !bytes.Equal(got, want) || len(want) == 0 {
			t.Errorf("restored %s differs from the original (%v)", rel, err)
		}
	}
	// Only the two selected files came back.
	var restored []string
	_ = filepath.Walk(target, func(p string, info os.FileInfo, err error) error {
		if err == nil && !info.IsDir() {
			restored = append(restored, p)
		}
		return nil
	})
	if len(restored) != 2 {
		t.Errorf("restored %d files, want 2: %v", len(restored), restored)
	}
	// The job page says what the restore did and where, in its own terms,
	// and its arguments as fields rather than JSON.
	b.waitJS("the restore's report", `!!document.querySelector('#kind-restored')`, 20*time.Second)
	if got := b.text("#kind-restored"); !strings.HasPrefix(got, "2 files") {
		t.Errorf("restore report %q, want 2 files", got)
	}
	if got := b.text("#kind-into"); got != target {
		t.Errorf("restore target shown %q, want %s", got, target)
	}
	if got := b.text("#arg-snapshot_id"); len(got) < 8 || strings.Contains(b.text("#job-args"), "{") {
		t.Errorf("arguments shown as %q", b.text("#job-args"))
	}

	// The repository page lists both snapshots and diffs them.
	b.open("/repos/" + f.repoID)
	if n := b.count(`#snapshot-list tr[data-snapshot]`); n != 2 {
		t.Fatalf("repository page lists %d snapshots, want 2", n)
	}
	b.step("diff the two snapshots",
		chromedp.Click(chromedp.CSS(`#snapshot-list tr:nth-child(1) input.diff-pick`)),
		chromedp.Click(chromedp.CSS(`#snapshot-list tr:nth-child(2) input.diff-pick`)),
		chromedp.Click(chromedp.CSS(`#diff-run`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=job][data-kind=diff]`)),
	)
	b.waitJS("the diff's changes", `!document.querySelector('#changes').hidden`, 2*time.Minute)
	if got := b.text("#changes-list"); !strings.Contains(got, "added-later.txt") {
		t.Errorf("diff lists %q, want the added file", got)
	}
	b.shot("diff")
}

func TestBrowserViewerSeesNoControls(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	initJob := f.srv.createJob(f.host.ID, map[string]any{"kind": "snapshots", "repo_id": f.repoID})
	f.srv.waitJob(initJob, time.Minute)
	const viewerPW = "viewer-password-long"

	// An admin adds the viewer on the users page (the form posts to
	// POST /api/v1/users); a too-short password is refused in words.
	b := newBrowser(t, f.srv)
	b.login("admin", adminPassword)
	b.open("/settings")
	b.step("add a user with a short password",
		chromedp.SendKeys(chromedp.CSS(`#user-form input[name=name]`), "vera"),
		chromedp.SetValue(chromedp.CSS(`#user-form input[name=password]`), "short"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#user-form input[name=password]').removeAttribute('minlength')`),
		chromedp.Click(chromedp.CSS(`#user-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#user-error`)),
	)
	if msg := b.text("#user-error"); !strings.Contains(msg, "12 to 1024 characters") {
		t.Errorf("short password error: %q", msg)
	}
	b.step("add the viewer",
		chromedp.SetValue(chromedp.CSS(`#user-form input[name=password]`), viewerPW),
		chromedp.SetValue(chromedp.CSS(`#user-form select[name=role]`), "viewer"),
		chromedp.Click(chromedp.CSS(`#user-form button[type=submit]`)),
		chromedp.WaitVisible(chromedp.CSS(`#users tr[data-user=vera]`)),
	)
	b.shot("settings")
	b.step("log out", chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))
	b.login("vera", viewerPW)
	if got := b.text("#who"); !strings.Contains(got, "viewer") {
		t.Errorf("logged in as %q, want the viewer", got)
	}
	controls := `#run-form, #run-submit, #schedule-editor, .edit-schedule, .delete-schedule, #cancel-job, #nav-restore, #diff-run, .diff-pick, #user-form`
	for _, page := range []string{"/", "/hosts/" + f.host.ID, "/jobs/" + initJob, "/repos/" + f.repoID, "/settings"} {
		b.open(page)
		if n := b.count(controls); n != 0 {
			html := eval[string](b, `Array.from(document.querySelectorAll(`+jsString(controls)+`)).map(e => e.outerHTML.slice(0, 80)).join('\n')`)
			t.Errorf("viewer sees %d run or edit controls on %s:\n%s", n, page, html)
		}
	}
	b.open("/restore")
	if msg := b.text("#page-error"); !strings.Contains(msg, "role") {
		t.Errorf("viewer on /restore: %q", msg)
	}

	// The API refuses the same actions to the viewer's browser session.
	actions := map[string]string{
		"run a job":      `fetch('/api/v1/hosts/` + f.host.ID + `/jobs', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({kind: 'backup', repo_id: '` + f.repoID + `', args: {paths: ['/etc']}})})`,
		"edit schedules": `fetch('/api/v1/hosts/` + f.host.ID + `/schedules', {method: 'PUT', headers: {'Content-Type': 'application/json'}, body: '[]'})`,
		"restore":        `fetch('/api/v1/restores', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({repo_id: '` + f.repoID + `', snapshot_id: 'abcdef01', target_host_id: '` + f.host.ID + `', target_path: '/tmp/x'})})`,
		"cancel a job":   `fetch('/api/v1/jobs/` + initJob + `/cancel', {method: 'POST'})`,
		"add a user":     `fetch('/api/v1/users', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'mallory', password: 'long-enough-password', role: 'admin'})})`,
	}
	for what, call := range actions {
		code := eval[int](b, call+`.then(r => r.status)`, chromedp.EvalAwaitPromise)
		if code != http.StatusForbidden {
			t.Errorf("viewer may %s: status %d, want 403", what, code)
		}
	}
}

func TestBrowserCrossSiteFormRefused(t *testing.T) {
	s := newServer(t)
	h := s.createHost("target")
	b := newBrowser(t, s)
	b.login("admin", adminPassword)
	countJobs := func() int {
		var jobs []map[string]any
		s.do("GET", "/api/v1/jobs?limit=100", nil, &jobs, 200)
		return len(jobs)
	}
	before := countJobs()

	// A page on another origin (same site: 127.0.0.1, so the Lax session
	// cookie goes along) posts a form at the console: a JSON body smuggled
	// in text/plain, the classic CSRF against a JSON API, and a log-out.
	evil := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html")
		fmt.Fprintf(w, `<!doctype html><form id="f1" method="post" enctype="text/plain" action="%s">
<input name='{"kind":"unlock","repo_id":"x","args":{},"pad":"' value='"}'><button id="go1">go</button></form>
<form id="f2" method="post" action="%s"><button id="go2">go</button></form>`, s.URL("/api/v1/hosts/"+h.ID+"/jobs"), s.URL("/logout"))
	}))
	defer evil.Close()
	for _, btn := range []string{"#go1", "#go2"} {
		b.step("open the other site", chromedp.Navigate(evil.URL), chromedp.WaitVisible(chromedp.CSS(btn)))
		resp, err := chromedp.RunResponse(b.ctx, chromedp.Click(chromedp.CSS(btn)))
		if err != nil {
			t.Fatalf("cross-site post %s: %v", btn, err)
		}
		if resp.Status != http.StatusForbidden {
			t.Errorf("cross-site form post %s answered %d, want 403", btn, resp.Status)
		}
	}
	if n := countJobs(); n != before {
		t.Errorf("a cross-site post created a job (%d → %d)", before, n)
	}
	// Still logged in: the log-out post was refused too.
	b.open("/")
	if n := b.count(`main[data-page=dashboard]`); n != 1 {
		t.Error("the cross-site log-out ended the session")
	}

	// The same with a plain HTTP client: a session cookie and a foreign
	// Origin, or a browser's cross-site marker, are refused; same-origin
	// posts work.
	for _, hdr := range []map[string]string{{"Origin": "https://evil.example"}, {"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"}} {
		for _, path := range []string{"/api/v1/tokens", "/logout"} {
			req, _ := http.NewRequest("POST", s.URL(path), strings.NewReader(`{"name":"x"}`))
			req.Header.Set("Content-Type", "application/json")
			for k, v := range hdr {
				req.Header.Set(k, v)
			}
			resp, err := s.API.HTTP.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusForbidden {
				t.Errorf("POST %s with %v: %d, want 403", path, hdr, resp.StatusCode)
			}
		}
	}
	req, _ := http.NewRequest("POST", s.URL("/api/v1/tokens"), strings.NewReader(`{"name":"same-origin"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Sec-Fetch-Site", "same-origin")
	resp, err := s.API.HTTP.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Errorf("same-origin POST /api/v1/tokens: %d, want 201", resp.StatusCode)
	}
}
