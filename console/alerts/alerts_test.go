package alerts

import (
	"context"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/teststore"
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
