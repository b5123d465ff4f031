package alerts

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/drills"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A failed backup raises job_failed as critical (its host is failing); a
// success resolves it; another kind's failure is a warning; a failed probe
// raises nothing.
func TestJobEndsRaiseAndResolveJobFailed(t *testing.T) {
	st := teststore.Open(t)
	f, err := fleet.New(fleet.Options{Store: st, Publisher: &teststore.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	al := New(Options{Fleet: f, Interval: time.Hour})
	t.Cleanup(func() { al.Close(); f.Close() })
	teststore.EnrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	run := func(kind, args, status string) {
		t.Helper()
		j, err := f.CreateJob(fleet.JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: kind, Args: []byte(args), ActorKind: "user", Actor: "u"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := wire.Encode(&wire.Result{JobID: j.ID, Status: status, EndedAt: time.Now().UTC(), Error: "boom"})
		if err := f.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindResult, Job: j.ID}, b); err != nil {
			t.Fatal(err)
		}
	}
	waitAlert := func(id, state, severity string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			a, err := st.GetAlert(id)
			if err == nil && a.State == state && (severity == "" || a.Severity == severity) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("alert %s: %+v (%v), want %s %s", id, a, err, state, severity)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	run(wire.JobBackup, `{"paths":["/etc"]}`, wire.StatusFailed)
	waitAlert("job_failed.host-a.backup", storage.AlertFiring, "critical")
	run(wire.JobBackup, `{"paths":["/etc"]}`, wire.StatusSucceeded)
	waitAlert("job_failed.host-a.backup", storage.AlertResolved, "")
	run(wire.JobCheck, ``, wire.StatusFailed)
	waitAlert("job_failed.host-a.check", storage.AlertFiring, "warning")
	run(wire.JobLocks, ``, wire.StatusFailed)
	// The probe's end is observed after the check's: once the check's
	// alert is there, give the probe's observer the same time and check.
	time.Sleep(200 * time.Millisecond)
	if _, err := st.GetAlert("job_failed.host-a.locks"); err == nil {
		t.Error("a failed probe raised job_failed")
	}
}

// A failed drill raises drill_failed on the host it proves, naming the
// mismatching paths, and the next successful drill resolves it. A host
// with a weekly drill and no success falls drill_overdue when the clock
// passes two weeks, and a successful drill resolves that too.
func TestDrillFailedAndOverdue(t *testing.T) {
	st := teststore.Open(t)
	f, err := fleet.New(fleet.Options{Store: st, Publisher: &teststore.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	drills.New(f, nil)
	clock := time.Now()
	al := New(Options{Fleet: f, Interval: time.Hour, Now: func() time.Time { return clock }})
	t.Cleanup(func() { al.Close(); f.Close() })
	teststore.EnrolledHost(t, st, "web")
	teststore.EnrolledHost(t, st, "drillbox")
	if _, err := st.UpdateHost("web", func(h *storage.Host) error { h.Hostname = "web.example"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"web", "drillbox"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := f.PutSchedules("web", []schedules.Schedule{{Name: "weekly drill", Kind: wire.JobDrill, Cron: "0 3 * * 0", Enabled: true, RepoID: "repo-1"}}, false); err != nil {
		t.Fatal(err)
	}
	wait := func(id, state string, check func(storage.Alert) bool) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for {
			a, err := st.GetAlert(id)
			if err == nil && a.State == state && (check == nil || check(a)) {
				return
			}
			if time.Now().After(deadline) {
				t.Fatalf("alert %s: %+v (%v), want %s", id, a, err, state)
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	run := func(status string, out wire.DrillOutput) {
		t.Helper()
		j, err := f.CreateJob(fleet.JobRequest{HostID: "web", RepoID: "repo-1", Kind: wire.JobDrill, Args: []byte(`{"target_host_id":"drillbox"}`), ActorKind: "user", Actor: "u"})
		if err != nil {
			t.Fatal(err)
		}
		res := wire.Result{JobID: j.ID, Status: status, EndedAt: time.Now().UTC()}
		if status == wire.StatusFailed {
			res.Error, res.ExitCode = "2 files differ", 1
		}
		res.Output, _ = json.Marshal(out)
		b, _ := wire.Encode(&res)
		if err := f.Ingest(context.Background(), "drillbox", wire.Topic{Host: "drillbox", Kind: wire.KindResult, Job: j.ID}, b); err != nil {
			t.Fatal(err)
		}
	}

	al.evaluateAlerts(context.Background())
	if _, err := st.GetAlert("drill_overdue.web"); err == nil {
		t.Fatal("drill_overdue fired at once")
	}
	clock = clock.Add(15 * 24 * time.Hour)
	al.evaluateAlerts(context.Background())
	wait("drill_overdue.web", storage.AlertFiring, func(a storage.Alert) bool { return strings.Contains(a.Message, "never been proven restorable") })

	run(wire.StatusFailed, wire.DrillOutput{Mismatches: []wire.DrillMismatch{{Path: "/srv/www/index.html", Reason: "sha256 differs"}, {Path: "/etc/passwd"}}})
	wait("drill_failed.web", storage.AlertFiring, func(a storage.Alert) bool {
		return a.Severity == "critical" && strings.Contains(a.Message, "/srv/www/index.html (sha256 differs), /etc/passwd") && strings.Contains(a.Message, "run on drillbox")
	})
	if _, err := st.GetAlert("job_failed.drillbox.drill"); err == nil {
		t.Error("a failed drill raised job_failed on the host that ran it too")
	}

	run(wire.StatusSucceeded, wire.DrillOutput{FilesChecked: 100})
	wait("drill_failed.web", storage.AlertResolved, nil)
	wait("drill_overdue.web", storage.AlertResolved, nil)
	// Proven just now (by the real clock): not overdue on the next round.
	clock = time.Now()
	al.evaluateAlerts(context.Background())
	wait("drill_overdue.web", storage.AlertResolved, nil)
}
