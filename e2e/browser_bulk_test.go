package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// An operator filters the dashboard by a label and runs a backup on the
// hosts it shows: the confirmation names the count, and the answer lists
// the job made and the host refused with its reason.
func TestBrowserBulkRunFromTheDashboard(t *testing.T) {
	s := newServer(t)
	web := s.createHost("web-1")
	enrollAgent(t, s, web.EnrollToken, testenv.Restic(t)) // not started: its job waits queued
	fresh := s.createHost("web-2")                        // never enrolled
	other := s.createHost("db-1")
	for id, role := range map[string]string{web.ID: "web", fresh.ID: "web", other.ID: "db"} {
		s.do("PATCH", "/api/v1/hosts/"+id, map[string]any{"labels": map[string]string{"role": role}}, nil, 200)
	}
	s.createRepo("main", "rest:http://127.0.0.1:1/main/", "pw-main", web.ID, fresh.ID, other.ID)
	const operatorPW = "operator-password-long"
	s.do("POST", "/api/v1/users", map[string]string{"name": "olga", "password": operatorPW, "role": "operator"}, nil, 201)

	b := newBrowser(t, s)
	b.login("olga", operatorPW)
	b.open("/?label=role=web")
	if got := b.text("#bulk-summary"); got != "Run on these 2 hosts…" {
		t.Errorf("bulk control: %q", got)
	}
	b.step("pick a backup without paths",
		chromedp.Click(chromedp.CSS(`#bulk-summary`)),
		chromedp.WaitVisible(chromedp.CSS(`#bulk-paths`)),
		chromedp.Click(chromedp.CSS(`#bulk-next`)),
		chromedp.WaitVisible(chromedp.CSS(`#bulk-error`)),
	)
	if got := b.text("#bulk-error"); !strings.Contains(got, "at least one path") {
		t.Errorf("backup without paths: %q", got)
	}
	b.step("give a path and continue",
		chromedp.SetValue(chromedp.CSS(`#bulk-paths`), "/srv/www"),
		chromedp.Click(chromedp.CSS(`#bulk-next`)),
		chromedp.WaitVisible(chromedp.CSS(`#bulk-confirm`)),
	)
	if got := b.text("#bulk-question"); got != "Back up 2 hosts now?" {
		t.Errorf("confirmation: %q", got)
	}
	if n := len(s.jobs()); n != 0 {
		t.Fatalf("%d jobs before the confirmation", n)
	}
	b.shot("bulk-confirm")
	b.step("confirm",
		chromedp.Click(chromedp.CSS(`#bulk-yes`)),
		chromedp.WaitVisible(chromedp.CSS(`#bulk-result`)),
	)
	b.shot("bulk-result")
	if got := b.text("#bulk-made"); got != "1 job made." {
		t.Errorf("result: %q", got)
	}
	if got := b.text(`#bulk-refused li[data-host="` + fresh.ID + `"]`); !strings.Contains(got, "has not enrolled") {
		t.Errorf("refused host: %q", got)
	}
	jobs := s.jobs()
	if len(jobs) != 1 || jobs[0].HostID != web.ID || jobs[0].Kind != "backup" || jobs[0].Actor != "olga" {
		t.Fatalf("jobs after the bulk run: %+v", jobs)
	}
	if b.count(`#bulk-jobs a[href="/jobs/`+jobs[0].ID+`"]`) != 1 {
		t.Error("the result does not link the job made")
	}
}
