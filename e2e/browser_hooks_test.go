package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/restic-manager/restic-manager/wire"
)

// An operator sees the hooks and sources the agent reports on its host's
// page, runs a backup with a hook ticked (the job's arguments carry the
// name), and, once the agent's result comes, sees the hook runs on the
// job's page with the failed one marked.
func TestBrowserHooksOnHostAndJobPages(t *testing.T) {
	s := newServer(t)
	web, agent := fakeAgentWithHooks(t, s, "web-1", []string{"freeze", "notify"}, []string{"pg"}, []string{"pg"})
	repoID := s.createRepo("main", "rest:http://127.0.0.1:9/main/", "pw", web)

	b := newBrowser(t, s)
	b.login("admin", adminPassword)
	b.open("/hosts/" + web)
	if got := b.text(`#host-hooks`); !strings.Contains(got, "freeze") || !strings.Contains(got, "notify") {
		t.Fatalf("host hooks: %q", got)
	}
	if got := b.text(`#host-sources`); !strings.Contains(got, "pg") || !strings.Contains(got, "defined in the agent's own configuration") {
		t.Fatalf("host sources: %q", got)
	}
	b.step("run a backup with the freeze hook",
		chromedp.SetValue(chromedp.CSS(`#run-kind`), "backup"),
		chromedp.SetValue(chromedp.CSS(`#run-repo`), repoID),
		chromedp.SendKeys(chromedp.CSS(`#run-paths`), "/etc"),
		chromedp.Click(chromedp.CSS(`#run-form input[name=hooks][value=freeze]`)),
		chromedp.Click(chromedp.CSS(`#run-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=job]`)),
	)
	jobID := eval[string](b, `document.querySelector('#job').dataset.jobId`)
	var made struct {
		Args wire.BackupArgs `json:"args"`
	}
	s.do("GET", "/api/v1/jobs/"+jobID, nil, &made, 200)
	if strings.Join(made.Args.Hooks, ",") != "freeze" || strings.Join(made.Args.Paths, ",") != "/etc" {
		t.Fatalf("job args %+v", made.Args)
	}

	res, err := wire.Encode(&wire.Result{JobID: jobID, Status: wire.StatusFailed, ExitCode: 1, EndedAt: time.Now().UTC(), Error: "before-hook freeze failed: restic did not run",
		Hooks: []wire.HookRun{{Name: "freeze", Phase: wire.HookBefore, ExitCode: 3, DurationMS: 21, OutputTail: "<b>fsfreeze: busy</b>"}}})
	if err != nil {
		t.Fatal(err)
	}
	if code := agent.publish(t, wire.ResultTopic(web, jobID), res, false); code != 0 {
		t.Fatalf("result: reason %#x", code)
	}
	// The open page redraws from the live stream; a fresh load renders it too.
	b.waitJS("the hook table", `document.querySelectorAll('#hook-runs tr.hook-failed[data-hook=freeze]').length === 1`, 20*time.Second)
	b.open("/jobs/" + jobID)
	if got := b.text(`#hook-runs tr.hook-failed .hook-output`); got != "<b>fsfreeze: busy</b>" {
		t.Errorf("hook output shown as %q", got)
	}
	if got := b.text(`#job-error`); !strings.Contains(got, "before-hook freeze failed") {
		t.Errorf("job error %q", got)
	}
}
