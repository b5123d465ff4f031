package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"

	"github.com/restic-manager/restic-manager/wire"
)

// An operator runs a copy from a host's page: the destination select
// offers the repositories the host is bound to other than the source; the
// agent gets the copy, and once its result comes the open job page says
// what was copied. The repository page shows the copy lag per
// destination, the policy page its copy destination.
func TestBrowserCopy(t *testing.T) {
	s := newServer(t)
	web, agent := drillAgent(t, s, "web-1", "web1.example", nil)
	other, _ := drillAgent(t, s, "other", "other.example", nil)
	src := s.createRepo("site-a", "rest:http://127.0.0.1:9/a/", "pw", web)
	dst := s.createRepo("site-b", "rest:http://127.0.0.1:9/b/", "pw", web)
	far := s.createRepo("far", "rest:http://127.0.0.1:9/far/", "pw", other)

	b := newBrowser(t, s)
	b.login("admin", adminPassword)
	b.open("/hosts/" + web)
	b.step("choose a copy from site-a",
		chromedp.SetValue(chromedp.CSS(`#run-kind`), "copy"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#run-kind').dispatchEvent(new Event('change'))`),
		chromedp.SetValue(chromedp.CSS(`#run-repo`), src),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#run-repo').dispatchEvent(new Event('change'))`),
	)
	offered := eval[[]string](b, `[...document.querySelectorAll('#run-copy-to option')].filter(o => !o.hidden).map(o => o.value)`)
	if len(offered) != 1 || offered[0] != dst {
		t.Errorf("destinations offered %v, want only %s (not the source, not %s)", offered, dst, far)
	}
	if eval[string](b, `document.querySelector('#run-copy-to').value`) != dst {
		t.Error("the destination select kept the source")
	}
	b.step("run the copy",
		chromedp.Click(chromedp.CSS(`#run-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=job]`)),
	)
	jobID := eval[string](b, `document.querySelector('#job').dataset.jobId`)
	cmd := copyAgentCommand(t, agent, "copy "+jobID, func(c wire.Command) bool { return c.JobID == jobID })
	var a wire.CopyArgs
	if err := json.Unmarshal(cmd.Args, &a); err != nil || cmd.Kind != wire.JobCopy || a.ToRepoID != dst || a.Hostname != "web1.example" || cmd.SealedToRepo == "" {
		t.Fatalf("copy command %s %s", cmd.Kind, cmd.Args)
	}
	publishResult(t, agent, web, jobID, "", wire.CopyOutput{Copied: []string{strings.Repeat("a", 64), strings.Repeat("b", 64)}, Skipped: 1})
	b.step("wait for the copy report", chromedp.WaitVisible(chromedp.CSS(`#copy-report[data-done]`)))
	if got := b.text(`#copy-copied`); got != "2" {
		t.Errorf("copied %q", got)
	}
	if got := b.text(`#copy-skipped`); got != "1" {
		t.Errorf("skipped %q", got)
	}
	if n := b.count(`#copy-list li`); n != 2 {
		t.Errorf("copied list %d", n)
	}

	// The lag: three snapshots, one copied, a policy threshold of 1.
	s.do("PATCH", "/api/v1/hosts/"+web, map[string]any{"labels": map[string]string{"role": "web"}}, nil, 200)
	var pol struct {
		ID string `json:"id"`
	}
	s.do("POST", "/api/v1/policies", map[string]any{"name": "web", "selector": map[string]string{"role": "web"}, "repo_id": src,
		"copy_to_repo_id": dst, "copy_lag_max": 1}, &pol, 201)
	t0 := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	srcList := []snap{mkSnap('a', "", "web1.example", t0), mkSnap('b', "", "web1.example", t0.Add(time.Hour)), mkSnap('c', "", "web1.example", t0.Add(2*time.Hour))}
	listSnapshots(t, s, agent, web, src, srcList)
	listSnapshots(t, s, agent, web, dst, []snap{mkSnap('1', srcList[0].ID, "web1.example", t0)})
	s.waitCopyLag(src, dst, 2)
	b.open("/repos/" + src)
	row := `#copy-lag tr[data-to="` + dst + `"]`
	if got := b.text(row + ` td.copy-missing`); got != "2" {
		t.Errorf("missing shown %q", got)
	}
	if got := b.text(row); !strings.Contains(got, "site-b") || !strings.Contains(got, "hours ago") {
		t.Errorf("lag row %q", got)
	}
	if b.count(row+` td.copy-missing .st-failed`) != 1 {
		t.Error("a lag over the threshold is not marked")
	}
	b.open("/policies/" + pol.ID)
	if got := b.text(`#policy-copy`); !strings.Contains(got, "site-b") || !strings.Contains(got, "more than 1 snapshots") {
		t.Errorf("policy copy %q", got)
	}
	if got := eval[string](b, `document.querySelector('#policy-copy-to').value`); got != dst {
		t.Errorf("policy editor copy destination %q", got)
	}
}

// A copy schedule in the host's schedule editor has bandwidth limits and
// windows of its own, as a backup schedule does: saved through the API
// onto the schedule, shown again when it is edited, and a window the
// editor cannot read is refused on the page with the expected form.
func TestBrowserCopyScheduleWindows(t *testing.T) {
	s := newServer(t)
	web, _ := drillAgent(t, s, "web-1", "web1.example", nil)
	src := s.createRepo("site-a", "rest:http://127.0.0.1:9/a/", "pw", web)
	dst := s.createRepo("site-b", "rest:http://127.0.0.1:9/b/", "pw", web)

	b := newBrowser(t, s)
	b.login("admin", adminPassword)
	b.open("/hosts/" + web)
	ed := `#schedule-editor `
	b.step("fill in a copy schedule",
		chromedp.Click(chromedp.CSS(`#schedule-editor-box summary`)),
		chromedp.SendKeys(chromedp.CSS(ed+`input[name=name]`), "offsite copy"),
		chromedp.SetValue(chromedp.CSS(ed+`select[name=kind]`), "copy"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#schedule-editor select[name=kind]').dispatchEvent(new Event('change'))`),
		chromedp.SendKeys(chromedp.CSS(ed+`input[name=cron]`), "0 3 * * *"),
		chromedp.SetValue(chromedp.CSS(ed+`select[name=repo_id]`), src),
		chromedp.SetValue(chromedp.CSS(ed+`select[name=to_repo_id]`), dst),
		chromedp.SendKeys(chromedp.CSS(ed+`input[name=copy_limit_upload_kib]`), "1024"),
		chromedp.SetValue(chromedp.CSS(ed+`textarea[name=copy_limit_windows]`), "mon-fri 08:00-18:00 512/256\nsat,sun 10:00-12:00 0/64"),
	)
	if !eval[bool](b, `document.querySelector('#schedule-editor textarea[name=copy_limit_windows]').offsetParent !== null`) {
		t.Error("the copy section's windows are not shown for a copy schedule")
	}
	b.step("save it", chromedp.Click(chromedp.CSS(`#schedule-save`)), chromedp.WaitVisible(chromedp.CSS(`#schedule-list tr[data-schedule]`)))

	var got struct {
		Schedules []struct {
			Kind           string `json:"kind"`
			RepoID         string `json:"repo_id"`
			ToRepoID       string `json:"to_repo_id"`
			LimitUploadKiB int    `json:"limit_upload_kib"`
			LimitWindows   []struct {
				Days             []string `json:"days"`
				From             string   `json:"from"`
				To               string   `json:"to"`
				LimitUploadKiB   int      `json:"limit_upload_kib"`
				LimitDownloadKiB int      `json:"limit_download_kib"`
			} `json:"limit_windows"`
		} `json:"schedules"`
	}
	s.do("GET", "/api/v1/hosts/"+web+"/schedules", nil, &got, 200)
	if len(got.Schedules) != 1 {
		t.Fatalf("schedules %+v", got)
	}
	sc := got.Schedules[0]
	if sc.Kind != wire.JobCopy || sc.RepoID != src || sc.ToRepoID != dst || sc.LimitUploadKiB != 1024 || len(sc.LimitWindows) != 2 {
		t.Fatalf("saved schedule %+v", sc)
	}
	if w := sc.LimitWindows[0]; strings.Join(w.Days, ",") != "mon,tue,wed,thu,fri" || w.From != "08:00" || w.To != "18:00" || w.LimitUploadKiB != 512 || w.LimitDownloadKiB != 256 {
		t.Errorf("first window %+v", w)
	}
	if w := sc.LimitWindows[1]; strings.Join(w.Days, ",") != "sat,sun" || w.LimitUploadKiB != 0 || w.LimitDownloadKiB != 64 {
		t.Errorf("second window %+v", w)
	}

	// Edited again: the fields hold what was saved.
	b.step("edit it", chromedp.Click(chromedp.CSS(`.edit-schedule`)), chromedp.WaitVisible(chromedp.CSS(ed+`textarea[name=copy_limit_windows]`)))
	if v := eval[string](b, `document.querySelector('#schedule-editor textarea[name=copy_limit_windows]').value`); v != "mon-fri 08:00-18:00 512/256\nsat-sun 10:00-12:00 0/64" {
		t.Errorf("windows shown for editing %q", v)
	}
	if v := eval[string](b, `document.querySelector('#schedule-editor input[name=copy_limit_upload_kib]').value`); v != "1024" {
		t.Errorf("upload limit shown for editing %q", v)
	}
	b.step("save a window the editor cannot read",
		chromedp.SetValue(chromedp.CSS(ed+`textarea[name=copy_limit_windows]`), "weekdays 8-18 5120"),
		chromedp.Click(chromedp.CSS(`#schedule-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#schedule-error`)),
	)
	if msg := b.text("#schedule-error"); !strings.Contains(msg, "mon-fri 08:00-18:00 5120/0") {
		t.Errorf("window error %q does not show the expected form", msg)
	}
}
