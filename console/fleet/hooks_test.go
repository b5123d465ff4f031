package fleet

import (
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func onlineStatus(hooks, sources, restore []string) *wire.Status {
	return &wire.Status{Online: true, OS: "linux", Arch: "amd64", AgentVersion: "1", StartedAt: time.Unix(1000, 0).UTC(),
		Hooks: hooks, Sources: sources, RestoreSources: restore}
}

// The names an agent reports are stored on its host and replace the
// earlier lists; an offline status (the broker's will) keeps them.
func TestStatusStoresHookAndSourceNames(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	ingestAs(t, f, "host-a", wire.KindStatus, "", onlineStatus([]string{"freeze", "notify"}, []string{"pg"}, []string{"pg"}))
	ingestAs(t, f, "host-a", wire.KindStatus, "", onlineStatus([]string{"freeze", "notify"}, []string{"pg"}, []string{"pg"})) // redelivered
	h, _ := st.GetHost("host-a")
	if strings.Join(h.Hooks, ",") != "freeze,notify" || strings.Join(h.Sources, ",") != "pg" || strings.Join(h.RestoreSources, ",") != "pg" {
		t.Fatalf("host %+v", h)
	}
	ingestAs(t, f, "host-a", wire.KindStatus, "", onlineStatus([]string{"notify"}, nil, nil))
	ingestAs(t, f, "host-a", wire.KindStatus, "", &wire.Status{Online: false})
	h, _ = st.GetHost("host-a")
	if strings.Join(h.Hooks, ",") != "notify" || len(h.Sources) != 0 || len(h.RestoreSources) != 0 {
		t.Fatalf("after the agent dropped names and went offline: %+v", h)
	}
}

// A person asking for a hook the host lacks is refused and nothing is
// sent; a result's hook runs are stored with the job.
func TestJobNamingAMissingHookIsRefusedBeforeSending(t *testing.T) {
	f, st, rec := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	seedRepo(t, st, "repo-1")
	ingestAs(t, f, "host-a", wire.KindStatus, "", onlineStatus([]string{"freeze"}, []string{"pg"}, nil))
	before := rec.Commands()
	_, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobBackup, Args: []byte(`{"paths":["/etc"],"hooks":["pg-freeze"]}`), ActorKind: "user", Actor: "u"})
	if err == nil || !strings.Contains(err.Error(), `has no hook "pg-freeze" (it reports: freeze)`) {
		t.Fatalf("error %v", err)
	}
	if rec.Commands() != before {
		t.Fatal("a refused job was sent")
	}
	j, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobBackup, Args: []byte(`{"hooks":["freeze"],"sources":["pg"]}`), ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	runs := []wire.HookRun{{Name: "freeze", Phase: wire.HookBefore, ExitCode: 3, DurationMS: 40, OutputTail: "no such db"}}
	ingestAs(t, f, "host-a", wire.KindResult, j.ID, &wire.Result{JobID: j.ID, Status: wire.StatusFailed, ExitCode: 1, EndedAt: time.Now().UTC(),
		Error: "before-hook freeze failed", Hooks: runs})
	got := waitStatus(t, st, j.ID, storage.JobFailed)
	if len(got.Hooks) != 1 || got.Hooks[0].OutputTail != "no such db" || got.Hooks[0].ExitCode != 3 {
		t.Fatalf("hooks stored %+v", got.Hooks)
	}
}

// A fire of a schedule naming a source the host lacks makes one failed
// job with the reason, sends nothing, and a repeated fire makes no other.
func TestFireNamingAMissingSourceMakesAFailedJob(t *testing.T) {
	f, st, rec := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	seedRepo(t, st, "repo-1")
	ingestAs(t, f, "host-a", wire.KindStatus, "", onlineStatus(nil, []string{"pg"}, nil))
	if _, err := st.UpdateSchedules("host-a", func(hs *storage.HostSchedules) error {
		hs.Version++
		hs.Policy = []schedules.Schedule{{ID: "dump", Name: "dump", Kind: wire.JobBackup, Cron: "0 2 * * *", Enabled: true, RepoID: "repo-1",
			Sources: []string{"mysql"}, PolicyID: "pol-1"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	before := rec.Commands()
	at := time.Now().UTC().Add(-time.Hour).Truncate(24 * time.Hour).Add(2 * time.Hour)
	if at.After(time.Now()) {
		at = at.Add(-24 * time.Hour)
	}
	fire := &wire.Fire{FireID: "f1", ScheduleID: "dump", ScheduleVersion: 1, ScheduledAt: at, FiredAt: at}
	ingestAs(t, f, "host-a", wire.KindFires, "", fire)
	ingestAs(t, f, "host-a", wire.KindFires, "", fire)
	jobs, _, _ := st.ListJobs(storage.JobQuery{HostID: "host-a"})
	if len(jobs) != 1 {
		t.Fatalf("%d jobs, want 1", len(jobs))
	}
	if jobs[0].Status != storage.JobFailed || !strings.Contains(jobs[0].Error, `has no source "mysql" (it reports: pg)`) {
		t.Fatalf("job %s: %q", jobs[0].Status, jobs[0].Error)
	}
	if rec.Commands() != before {
		t.Fatal("the refused fire's job was sent")
	}
}
