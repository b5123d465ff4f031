package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"

	"github.com/restic-manager/restic-manager/wire"
)

// An operator runs "a drill now" from a host's page with a sample budget
// and a probe; the agent gets the drill, and once its result comes the
// open job page shows the sample, the mismatching file's verdict, the
// probe's output (as text), the rate and the RTO estimate; the host page
// draws the history and the dashboard's proven column and filter say
// whether each host was proven restorable.
func TestBrowserDrill(t *testing.T) {
	s := newServer(t)
	web, agent := drillAgent(t, s, "web-1", "web1.example", []string{"pg-load"})
	other, _ := drillAgent(t, s, "other", "other.example", nil)
	repoID := s.createRepo("main", "rest:http://127.0.0.1:9/main/", "pw", web, other)

	b := newBrowser(t, s)
	b.login("admin", adminPassword)
	b.open("/hosts/" + web)
	if got := b.text(`#host-proven`); !strings.Contains(got, "never") {
		t.Errorf("proven before any drill: %q", got)
	}
	b.step("run a drill now",
		chromedp.Click(chromedp.CSS(`#drill-box summary`)),
		chromedp.SetValue(chromedp.CSS(`#drill-repo`), repoID),
		chromedp.SendKeys(chromedp.CSS(`#drill-files`), "25"),
		chromedp.SendKeys(chromedp.CSS(`#drill-mib`), "16"),
		chromedp.SetValue(chromedp.CSS(`#drill-probe`), "pg-load"),
		chromedp.Click(chromedp.CSS(`#drill-submit`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=job]`)),
	)
	jobID := eval[string](b, `document.querySelector('#job').dataset.jobId`)
	a := drillCommand(t, agent, jobID)
	if a.HostID != web || a.Hostname != "web1.example" || a.SampleFiles != 25 || a.SampleBytes != 16<<20 || a.Probe != "pg-load" {
		t.Fatalf("drill args %+v", a)
	}

	publishDrill(t, agent, web, jobID, wire.StatusFailed, wire.DrillOutput{SnapshotID: strings.Repeat("ab", 32), FilesChecked: 25, BytesChecked: 12 << 20,
		Sample: []string{"/etc/hosts", "/srv/www/index.html", "/var/lib/app.db"}, RestoreBytesPerS: 64 << 20, RestoreSeconds: 0.2,
		SnapshotBytes: 6 << 30, SnapshotFiles: 90000, EstimatedFullRestoreS: 96,
		Mismatches: []wire.DrillMismatch{{Path: "/srv/www/index.html", Reason: "sha256 differs from the live file"}},
		Probe:      &wire.DrillProbe{Name: "pg-load", OK: false, ExitCode: 2, Output: "<script>alert(1)</script> rows: 0"}})
	// The open page follows the live stream and draws the report.
	b.step("wait for the drill report", chromedp.WaitVisible(chromedp.CSS(`#drill-report[data-done]`)))
	if got := b.text(`#drill-rate`); !strings.Contains(got, "64.0 MiB/s") {
		t.Errorf("rate %q", got)
	}
	if got := b.text(`#drill-rto`); !strings.Contains(got, "96 s") {
		t.Errorf("RTO %q", got)
	}
	if got := b.text(`#drill-checked`); !strings.Contains(got, "25 files, 12.0 MiB") {
		t.Errorf("checked %q", got)
	}
	if got := b.text(`#drill-mismatches tr[data-path="/srv/www/index.html"]`); !strings.Contains(got, "sha256 differs from the live file") {
		t.Errorf("mismatch verdict %q", got)
	}
	if got := b.text(`#drill-probe-output`); got != "<script>alert(1)</script> rows: 0" {
		t.Errorf("probe output shown as %q", got)
	}
	if eval[bool](b, `document.querySelector('#drill-sample').open`) {
		t.Error("the sample is open before it is asked for")
	}
	b.step("open the sample", chromedp.Click(chromedp.CSS(`#drill-sample summary`)))
	if n := b.count(`#drill-sample li`); n != 3 {
		t.Errorf("sample shows %d files", n)
	}

	// A second drill succeeds: the host is proven, and has a history.
	ok := s.createJob(web, map[string]any{"kind": "drill", "repo_id": repoID, "args": map[string]any{}})
	drillCommand(t, agent, ok)
	publishDrill(t, agent, web, ok, wire.StatusSucceeded, wire.DrillOutput{FilesChecked: 100, BytesChecked: 50 << 20, RestoreBytesPerS: 80 << 20, EstimatedFullRestoreS: 77})
	s.waitDrill(web, ok)
	b.open("/hosts/" + web)
	if got := b.text(`#host-proven`); !strings.Contains(got, "just now") && !strings.Contains(got, "minute") {
		t.Errorf("proven after a success: %q", got)
	}
	if n := b.count(`#drill-history tbody tr`); n != 2 {
		t.Errorf("drill history rows: %d", n)
	}
	if n := b.count(`#drill-rate-chart svg polyline`); n != 1 {
		t.Errorf("rate chart: %d lines", n)
	}

	b.open("/")
	if got := b.text(`tr[data-host="` + web + `"] td.proven`); !strings.Contains(got, "just now") && !strings.Contains(got, "minute") {
		t.Errorf("dashboard proven for web: %q", got)
	}
	if got := b.text(`tr[data-host="` + other + `"] td.proven`); !strings.Contains(got, "never") {
		t.Errorf("dashboard proven for other: %q", got)
	}
	// A policy's drill cadence on its page.
	var pol struct {
		ID string `json:"id"`
	}
	s.do("POST", "/api/v1/policies", map[string]any{"name": "drills", "selector": map[string]string{"role": "web"}, "repo_id": repoID,
		"drill": map[string]any{"cron": "0 3 * * 0", "sample_files": 20, "sample_bytes": 8 << 20}}, &pol, 201)
	b.open("/policies/" + pol.ID)
	if got := b.text(`#policy-drill`); !strings.Contains(got, "0 3 * * 0") || !strings.Contains(got, "20 files, 8.0 MiB") {
		t.Errorf("policy drill %q", got)
	}
	if got := eval[string](b, `document.querySelector('#policy-drill-cron').value`); got != "0 3 * * 0" {
		t.Errorf("policy editor drill cron %q", got)
	}

	b.open("/?proven=never")
	if b.count(`tr[data-host="`+other+`"]`) != 1 || b.count(`tr[data-host="`+web+`"]`) != 0 {
		t.Errorf("?proven=never shows %d rows", b.count(`#hosts tbody tr[data-host]`))
	}
}
