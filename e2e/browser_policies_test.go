package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// An admin makes a policy in the browser for a labelled host: the
// selector's live preview counts the hosts it matches as the admin types
// ("matches 1 host"), the schedule is put in the policy's list with the
// cron preview, and saving says how many hosts changed. The host's page
// then shows the schedule "from policy"; deleting the policy (its
// confirmation names the matched hosts) takes the schedule away again.
func TestBrowserPolicyCreateAndDelete(t *testing.T) {
	s := newServer(t)
	web := s.createHost("web-1")
	s.createHost("db-1")
	s.do("PATCH", "/api/v1/hosts/"+web.ID, map[string]any{"labels": map[string]string{"role": "web", "env": "prod"}}, nil, 200)
	repoID := s.createRepo("main", "rest:http://127.0.0.1:9/main/", "repo-password")

	b := newBrowser(t, s)
	b.login("admin", adminPassword)
	b.step("open the policies from the nav",
		chromedp.Click(chromedp.CSS(`#nav-policies`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=policies] #new-policy`)),
	)
	if n := b.count(`#policies tr[data-policy]`); n != 0 {
		t.Fatalf("%d policies listed before any was made", n)
	}
	b.step("open the new-policy page",
		chromedp.Click(chromedp.CSS(`#new-policy`)),
		chromedp.WaitVisible(chromedp.CSS(`#policy-form`)),
	)
	// An empty selector matches every host; then the count follows the
	// typing.
	b.waitJS("the preview of the empty selector", `(document.querySelector('#policy-preview').textContent || '').startsWith('matches 2 hosts')`, 20*time.Second)
	b.step("type a selector matching no host yet",
		chromedp.SendKeys(chromedp.CSS(`#policy-form input[name=name]`), "web nightly"),
		chromedp.SendKeys(chromedp.CSS(`#policy-selector-text`), "role=w"),
	)
	b.waitJS("matches 0 hosts", `document.querySelector('#policy-preview').textContent === 'matches 0 hosts'`, 20*time.Second)
	b.step("finish the selector", chromedp.SendKeys(chromedp.CSS(`#policy-selector-text`), "eb"))
	b.waitJS("matches 1 host", `document.querySelector('#policy-preview').textContent === 'matches 1 host'`, 20*time.Second)

	// The repository: a template shows its fields instead of the list of
	// repositories; this policy uses the existing one.
	b.step("switch to a template and back",
		chromedp.Click(chromedp.CSS(`#policy-form input[name=repo_mode][value=template]`)),
		chromedp.WaitVisible(chromedp.CSS(`#policy-form input[name=template_url]`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#policy-repo-id`)),
		chromedp.Click(chromedp.CSS(`#policy-form input[name=repo_mode][value=existing]`)),
		chromedp.WaitVisible(chromedp.CSS(`#policy-repo-id`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#policy-form input[name=template_url]`)),
	)
	b.step("put a backup schedule in the list",
		chromedp.SetValue(chromedp.CSS(`#policy-repo-id`), repoID),
		chromedp.Click(chromedp.CSS(`#policy-schedule-box summary`)),
		chromedp.WaitVisible(chromedp.CSS(`#policy-schedule-editor input[name=name]`)),
		chromedp.SendKeys(chromedp.CSS(`#policy-schedule-editor input[name=name]`), "nightly files"),
		chromedp.SendKeys(chromedp.CSS(`#policy-schedule-editor input[name=cron]`), "0 2 * * *"),
		chromedp.SendKeys(chromedp.CSS(`#policy-schedule-editor textarea[name=paths]`), "/srv/www"),
	)
	b.waitJS("the cron preview", `document.querySelector('#policy-cron-preview').textContent.includes('every day at 02:00')`, 20*time.Second)
	b.step("add it",
		chromedp.Click(chromedp.CSS(`#policy-schedule-add`)),
		chromedp.WaitVisible(chromedp.CSS(`#policy-sched-list tr[data-index="0"]`)),
	)
	if got := b.text(`#policy-sched-list tr[data-index="0"]`); !strings.Contains(got, "nightly files") || !strings.Contains(got, "/srv/www") {
		t.Errorf("the schedule in the list: %q", got)
	}
	b.shot("policy-new")
	b.step("save the policy",
		chromedp.Click(chromedp.CSS(`#policy-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#policy-changed`)),
	)
	if got := b.text("#policy-changed"); got != "Saved; the schedules of 1 host changed." {
		t.Errorf("after saving: %q", got)
	}
	var pols []struct {
		ID        string            `json:"id"`
		Name      string            `json:"name"`
		Selector  map[string]string `json:"selector"`
		RepoID    string            `json:"repo_id"`
		Hosts     int               `json:"hosts"`
		Schedules []struct {
			Name  string   `json:"name"`
			Kind  string   `json:"kind"`
			Cron  string   `json:"cron"`
			Paths []string `json:"paths"`
		} `json:"schedules"`
	}
	s.do("GET", "/api/v1/policies", nil, &pols, 200)
	if len(pols) != 1 || pols[0].Name != "web nightly" || pols[0].Selector["role"] != "web" || len(pols[0].Selector) != 1 || pols[0].RepoID != repoID || pols[0].Hosts != 1 ||
		len(pols[0].Schedules) != 1 || pols[0].Schedules[0].Cron != "0 2 * * *" || pols[0].Schedules[0].Kind != "backup" || strings.Join(pols[0].Schedules[0].Paths, ",") != "/srv/www" {
		t.Fatalf("API: policies %+v", pols)
	}
	polID := pols[0].ID
	if got := eval[string](b, `location.pathname`); got != "/policies/"+polID {
		t.Errorf("after saving the page is %s, want the policy's", got)
	}
	if got := b.text("#policy-hosts"); got != "1 host matched now" {
		t.Errorf("policy page hosts: %q", got)
	}
	b.readmeShot("policy")

	// The host's page: the schedule, marked as the policy's.
	b.open("/hosts/" + web.ID)
	if got := b.text(`#schedule-list code.from-policy`); got != polID {
		t.Errorf("host page: schedule from policy %q, want %s", got, polID)
	}
	if got := b.text(`#schedule-list tbody`); !strings.Contains(got, "nightly files") || !strings.Contains(got, "from policy") {
		t.Errorf("host page schedules: %q", got)
	}
	b.shot("policy-host")

	// The list shows it; its page deletes it after a confirmation naming
	// the matched hosts.
	b.open("/policies")
	if got := b.text(`#policies tr[data-policy="` + polID + `"]`); !strings.Contains(got, "web nightly") || !strings.Contains(got, "role=web") || !strings.Contains(got, "main") || !strings.Contains(got, "1 (backup)") {
		t.Errorf("policy list row: %q", got)
	}
	b.step("open the policy from the list",
		chromedp.Click(chromedp.CSS(`#policies a.policy-link`)),
		chromedp.WaitVisible(chromedp.CSS(`#policy-delete`)),
		// Answer the confirmation, keeping its text (past the page change)
		// for the check below.
		chromedp.Evaluate[chromedp.Void](`window.confirm = m => { sessionStorage.setItem('confirmed', m); return true; }`),
		chromedp.Click(chromedp.CSS(`#policy-delete`)),
		chromedp.WaitVisible(chromedp.CSS(`#policy-deleted`)),
	)
	if got := eval[string](b, `String(sessionStorage.getItem('confirmed'))`); got != "Delete the policy web nightly? Its schedules leave the 1 host it matches. This cannot be undone." {
		t.Errorf("the confirmation asked %q", got)
	}
	if got := b.text("#policy-deleted"); got != "Policy deleted; the schedules of 1 host changed." {
		t.Errorf("after deleting: %q", got)
	}
	if n := b.count(`#policies tr[data-policy]`); n != 0 {
		t.Errorf("%d policies listed after the delete", n)
	}
	b.open("/hosts/" + web.ID)
	if n := b.count(`#schedule-list code.from-policy`); n != 0 {
		t.Errorf("host page still shows %d schedules from a policy", n)
	}
	if got := b.text(`#schedule-list tbody`); got != "No schedules." {
		t.Errorf("host page schedules after the delete: %q", got)
	}
}
