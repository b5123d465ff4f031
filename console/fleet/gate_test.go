package fleet

import (
	"context"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func TestRepoGateHoldsExclusiveWork(t *testing.T) {
	f, st, rec := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	enrolledHost(t, st, "host-b")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	start := func(host string, j storage.Job) {
		b, _ := wire.Encode(&wire.Progress{JobID: j.ID, Seq: 1, StartedAt: time.Now().UTC()})
		if err := f.Ingest(ctx, host, wire.Topic{Host: host, Kind: wire.KindProgress, Job: j.ID}, b); err != nil {
			t.Fatal(err)
		}
	}
	end := func(host string, j storage.Job) {
		b, _ := wire.Encode(&wire.Result{JobID: j.ID, Status: wire.StatusSucceeded, EndedAt: time.Now().UTC()})
		if err := f.Ingest(ctx, host, wire.Topic{Host: host, Kind: wire.KindResult, Job: j.ID}, b); err != nil {
			t.Fatal(err)
		}
	}
	get := func(id string) storage.Job {
		j, err := st.GetJob(id)
		if err != nil {
			t.Fatal(err)
		}
		return j
	}
	waitSent := func(n int) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for rec.Commands() < n && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		if rec.Commands() != n {
			t.Fatalf("%d commands sent, want %d", rec.Commands(), n)
		}
	}

	backup, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobBackup, Args: []byte(`{"paths":["/etc"]}`), ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	start("host-a", backup)
	// A prune from another host waits for the running backup.
	prune, err := f.CreateJob(JobRequest{HostID: "host-b", RepoID: "repo-1", Kind: wire.JobPrune, Args: nil, ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if p := get(prune.ID); !p.Held || !p.Waited || p.Status != storage.JobQueued {
		t.Fatalf("prune during a backup: %+v", p)
	}
	// A backup that comes after the waiting prune waits behind it.
	backup2, _ := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobBackup, Args: []byte(`{"paths":["/etc"]}`), ActorKind: "user", Actor: "u"})
	if !get(backup2.ID).Held {
		t.Fatal("a backup overtook a waiting prune")
	}
	// Another repository is not affected.
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-2", Name: "r2", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "/srv/r2", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	other, _ := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-2", Kind: wire.JobCheck, Args: nil, ActorKind: "user", Actor: "u"})
	if get(other.ID).Held {
		t.Fatal("a check on another repository was held")
	}
	waitSent(2)

	end("host-a", backup)
	waitSent(3) // the prune goes out
	if get(prune.ID).Held || !get(backup2.ID).Held {
		t.Fatal("after the backup: prune should be sent, the second backup still held")
	}
	start("host-b", prune)
	end("host-b", prune)
	waitSent(4) // the second backup (the health refresh waits for a quiet repository)
	if j := get(backup2.ID); j.Held || !j.Waited {
		t.Fatalf("second backup after the prune: %+v", j)
	}
}
