package e2e

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// TestBandwidthLimitThroughAnAgent: a backup schedule whose bandwidth
// window covers now runs under the window's upload limit, not the
// schedule's own (the job's API view and page say the limit in force),
// and restic, run by a real agent against rest-server, keeps to it: the
// rate it uploaded at (restic's data_added_packed over its backup time)
// is printed and checked loosely, since restic's limiter is a token
// bucket over the HTTP bodies with a one-second burst, and the backup's
// time also holds scanning and the repository's opening.
func TestBandwidthLimitThroughAnAgent(t *testing.T) {
	t.Parallel()
	const (
		limitKiB    = 2048     // the window's limit
		ownLimitKiB = 8192     // the schedule's own, outside its windows
		dataBytes   = 24 << 20 // incompressible: ~12 s at the limit
	)
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := t.TempDir()
	for i := 0; i < 6; i++ {
		w, err := os.Create(filepath.Join(src, fmt.Sprintf("random-%d.bin", i)))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.CopyN(w, rand.Reader, dataBytes/6); err != nil {
			t.Fatal(err)
		}
		if err := w.Close(); err != nil {
			t.Fatal(err)
		}
	}

	// The window is the whole day, every day: it covers any now.
	var set struct {
		Schedules []struct {
			ID string `json:"id"`
		} `json:"schedules"`
	}
	f.srv.do("PUT", "/api/v1/hosts/"+f.host.ID+"/schedules", []map[string]any{{
		"name": "limited", "kind": "backup", "cron": "@every 5s", "jitter_s": 0, "enabled": true, "repo_id": f.repoID,
		"paths": []string{src}, "limit_upload_kib": ownLimitKiB,
		"limit_windows": []map[string]any{{"from": "00:00", "to": "24:00", "limit_upload_kib": limitKiB}},
	}}, &set, 200)
	if len(set.Schedules) != 1 {
		t.Fatalf("schedules %+v", set)
	}
	var jobID string
	eventually(t, 30*time.Second, "the schedule's backup", func() error {
		for _, j := range f.srv.jobs() {
			if j.ScheduleID == set.Schedules[0].ID {
				jobID = j.ID
				return nil
			}
		}
		return errString("not fired yet")
	})
	// One fire is enough.
	f.srv.do("PUT", "/api/v1/hosts/"+f.host.ID+"/schedules", []map[string]any{}, nil, 200)

	var view struct {
		Args          json.RawMessage `json:"args"`
		BandwidthText string          `json:"bandwidth_text"`
	}
	f.srv.do("GET", "/api/v1/jobs/"+jobID, nil, &view, 200)
	want := fmt.Sprintf("upload limit %d KiB/s", limitKiB)
	if view.BandwidthText != want {
		t.Errorf("job bandwidth_text %q (args %s), want %q: the window's limit", view.BandwidthText, view.Args, want)
	}
	resp, err := f.srv.API.HTTP.Get(f.srv.URL("/jobs/" + jobID))
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(page), `<dd id="bandwidth">`+want+`</dd>`) {
		t.Errorf("the job page does not say %q", want)
	}

	j := f.srv.waitJob(jobID, 3*time.Minute)
	if j.Status != wire.StatusSucceeded {
		t.Fatalf("backup: %s: %s\n%s", j.Status, j.Error, j.StderrTail)
	}
	var sum struct {
		DataAddedPacked int64   `json:"data_added_packed"`
		TotalDuration   float64 `json:"total_duration"`
	}
	if err := json.Unmarshal(j.Summary, &sum); err != nil || sum.DataAddedPacked < dataBytes || sum.TotalDuration <= 0 {
		t.Fatalf("backup summary %s: %v", j.Summary, err)
	}
	rate := float64(sum.DataAddedPacked) / 1024 / sum.TotalDuration
	wall := j.EndedAt.Sub(j.StartedAt)
	t.Logf("limited backup: %.1f MiB uploaded in %.1f s (job %.1f s): %.0f KiB/s under a limit of %d KiB/s (%.2f×)",
		float64(sum.DataAddedPacked)/(1<<20), sum.TotalDuration, wall.Seconds(), rate, limitKiB, rate/limitKiB)
	if rate > 1.2*limitKiB || rate < 0.3*limitKiB {
		t.Errorf("measured %.0f KiB/s, want between 0.3× and 1.2× the limit of %d KiB/s", rate, limitKiB)
	}
}
