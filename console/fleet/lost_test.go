package fleet

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func ingestAs(t *testing.T, f *Fleet, host, kind, job string, p wire.Payload) {
	t.Helper()
	if err := f.Ingest(context.Background(), host, wire.Topic{Host: host, Kind: kind, Job: job}, mustEncode(t, p)); err != nil {
		t.Fatalf("%s %s: %v", kind, job, err)
	}
}

func startJob(t *testing.T, f *Fleet, host, repo string) storage.Job {
	t.Helper()
	j, err := f.CreateJob(JobRequest{HostID: host, RepoID: repo, Kind: wire.JobBackup, Args: []byte(`{"paths":["/etc"]}`), ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	ingestAs(t, f, host, wire.KindProgress, j.ID, &wire.Progress{JobID: j.ID, Seq: 1, StartedAt: time.Now().UTC()})
	return j
}

func waitStatus(t *testing.T, st *storage.Store, id, status string) storage.Job {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		j, err := st.GetJob(id)
		if err == nil && j.Status == status {
			return j
		}
		if time.Now().After(deadline) {
			t.Fatalf("job %s: %s (%v), want %s", id, j.Status, err, status)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func seedRepo(t *testing.T, st *storage.Store, id string) {
	t.Helper()
	if _, err := st.CreateRepo(storage.Repo{ID: id, Name: id, Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "/srv/" + id, Password: "pw"}); err != nil {
		t.Fatal(err)
	}
}

// An agent that reconnects without a job the console believes running (it
// was reinstalled, its journal lost) and reports nothing more about it: the
// job ends failed, "lost", and frees its repository; a job the agent lists,
// or one that keeps reporting, stays running; a result that still comes
// replaces the console's end.
func TestJobsAnAgentLostEnd(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	seedRepo(t, st, "repo-1")
	seedRepo(t, st, "repo-2")
	seedRepo(t, st, "repo-3")
	lost := startJob(t, f, "host-a", "repo-1")
	listed := startJob(t, f, "host-a", "repo-2")
	chatty := startJob(t, f, "host-a", "repo-3")
	// A prune waits behind the lost backup.
	prune, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobPrune, ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if j, _ := st.GetJob(prune.ID); !j.Held {
		t.Fatal("the prune was not held behind the running backup")
	}

	ingestAs(t, f, "host-a", wire.KindStatus, "", &wire.Status{Online: true, StartedAt: time.Now().UTC(), RunningJobs: []string{listed.ID}})
	time.Sleep(10 * time.Millisecond)
	ingestAs(t, f, "host-a", wire.KindProgress, chatty.ID, &wire.Progress{JobID: chatty.ID, Seq: 2, Percent: 50})
	f.endLostJobs(context.Background(), time.Now().Add(f.opts.LostGrace))

	j := waitStatus(t, st, lost.ID, storage.JobFailed)
	if !strings.Contains(j.Error, "lost") || !j.EndedByConsole {
		t.Errorf("lost job: %+v", j)
	}
	for _, id := range []string{listed.ID, chatty.ID} {
		if j, _ := st.GetJob(id); j.Status != storage.JobRunning {
			t.Errorf("job %s: %s, want still running", id, j.Status)
		}
	}
	// The repository is free: the prune goes out.
	deadline := time.Now().Add(10 * time.Second)
	for {
		if j, _ := st.GetJob(prune.ID); !j.Held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the prune is still held behind the lost job")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// The agent's own word, if it ever comes, wins.
	ingestAs(t, f, "host-a", wire.KindResult, lost.ID, &wire.Result{JobID: lost.ID, Status: wire.StatusSucceeded, EndedAt: time.Now().UTC()})
	if j := waitStatus(t, st, lost.ID, storage.JobSucceeded); j.EndedByConsole || j.Error != "" {
		t.Errorf("after the late result: %+v", j)
	}
}

// Cancel reaches a running job: with its host offline it ends at once; a
// deleted host's open jobs end and free their repositories.
func TestCancelRunningAndRemovedHostsEndJobs(t *testing.T) {
	f, st, rec := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	enrolledHost(t, st, "host-b")
	seedRepo(t, st, "repo-1")
	seedRepo(t, st, "repo-2")
	running := startJob(t, f, "host-a", "repo-1")
	// host-a is offline (its Will): cancel ends the running job now.
	ingestAs(t, f, "host-a", wire.KindStatus, "", &wire.Status{Online: false})
	before := rec.Commands()
	j, err := f.CancelJob(running.ID, "ops")
	if err != nil {
		t.Fatal(err)
	}
	if j.Status != storage.JobCancelled || !j.EndedByConsole {
		t.Fatalf("cancel of a running job whose host is offline: %+v", j)
	}
	if rec.Commands() != before+1 {
		t.Error("the agent was not told to cancel (it may still hold the job)")
	}

	b := startJob(t, f, "host-b", "repo-2")
	queued, err := f.CreateJob(JobRequest{HostID: "host-b", RepoID: "repo-2", Kind: wire.JobCheck, ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	// (enrol.DeleteHost does this after removing the record.)
	f.EndHostJobs(context.Background(), "host-b", "the host was deleted by admin")
	if j := waitStatus(t, st, b.ID, storage.JobFailed); !strings.Contains(j.Error, "deleted") {
		t.Errorf("running job of a deleted host: %+v", j)
	}
	waitStatus(t, st, queued.ID, storage.JobCancelled)
	// The repository is free again: a check from another host goes out
	// (at once, or as soon as the end's observers ran).
	c, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-2", Kind: wire.JobCheck, ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for j, _ := st.GetJob(c.ID); j.Held; j, _ = st.GetJob(c.ID) {
		if time.Now().After(deadline) {
			t.Fatal("the deleted host's job still holds its repository")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// An agent's clock is believed only within a small skew: a result dated in
// 2099 is recorded at the console's time (so the host still goes stale),
// and the skew its status shows is kept for the host page.
func TestAgentClocksAreBounded(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	seedRepo(t, st, "repo-1")
	j := startJob(t, f, "host-a", "repo-1")
	future := time.Date(2099, 1, 1, 0, 0, 0, 0, time.UTC)
	ingestAs(t, f, "host-a", wire.KindResult, j.ID, &wire.Result{JobID: j.ID, Status: wire.StatusSucceeded, StartedAt: future, EndedAt: future})
	got := waitStatus(t, st, j.ID, storage.JobSucceeded)
	if got.EndedAt.After(time.Now().Add(time.Minute)) || got.StartedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("job times taken from a clock in 2099: %v – %v", got.StartedAt, got.EndedAt)
	}
	h, _ := st.GetHost("host-a")
	if h.LastSuccess == nil || h.LastSuccess.EndedAt.After(time.Now().Add(time.Minute)) {
		t.Errorf("the host's last success is %+v", h.LastSuccess)
	}
	ingestAs(t, f, "host-a", wire.KindStatus, "", &wire.Status{Online: true, StartedAt: time.Now().UTC(), SentAt: time.Now().Add(90 * time.Minute).UTC()})
	if h, _ := st.GetHost("host-a"); h.ClockSkew < 89*time.Minute || h.ClockSkew > 91*time.Minute {
		t.Errorf("clock skew %s, want about 90m", h.ClockSkew)
	}
}

// An agent that publishes status after status gets its queued jobs re-sent
// once, not once per status (re-sealing every job each time).
func TestStatusFloodResendsOnce(t *testing.T) {
	f, st, rec := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	seedRepo(t, st, "repo-1")
	if _, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobInit, ActorKind: "user", Actor: "u"}); err != nil {
		t.Fatal(err)
	}
	before := rec.Commands()
	started := time.Now().UTC()
	for range 20 {
		ingestAs(t, f, "host-a", wire.KindStatus, "", &wire.Status{Online: true, StartedAt: started})
		ingestAs(t, f, "host-a", wire.KindStatus, "", &wire.Status{Online: false})
	}
	deadline := time.Now().Add(5 * time.Second)
	for rec.Commands() < before+1 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // room for any further (wrong) re-sends
	if n := rec.Commands() - before; n != 1 {
		t.Errorf("%d re-sends for 20 reconnections within a minute, want 1 (the rest deferred)", n)
	}
}
