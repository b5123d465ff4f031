package fleet

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// fires counts fire outcomes (the Instruments seam; the console's real
// metrics count the same calls).
type fires struct {
	mu sync.Mutex
	n  map[string]int
}

func (c *fires) Ingested(string) {}
func (c *fires) Rejected()       {}
func (c *fires) Fire(outcome string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.n == nil {
		c.n = map[string]int{}
	}
	c.n[outcome]++
}

func (c *fires) count(outcome string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n[outcome]
}

func newTestFleet(t *testing.T) (*Fleet, *storage.Store, *teststore.Recorder) {
	t.Helper()
	st := teststore.Open(t)
	rec := &teststore.Recorder{}
	f, err := New(Options{Store: st, Publisher: rec, Instruments: &fires{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f, st, rec
}

var enrolledHost = teststore.EnrolledHost

func mustEncode(t *testing.T, p wire.Payload) []byte {
	t.Helper()
	b, err := wire.Encode(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestIngestIsIdempotent(t *testing.T) {
	f, st, rec := newTestFleet(t)
	ctx := context.Background()
	enrolledHost(t, st, "host-a")
	enrolledHost(t, st, "host-b")
	repo, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"})
	if err != nil {
		t.Fatal(err)
	}
	j, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: repo.ID, Kind: wire.JobBackup, Args: []byte(`{"paths":["/etc"]}`), ActorKind: "user", Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	if rec.Commands() != 1 {
		t.Fatalf("%d commands published, want 1", rec.Commands())
	}

	started := time.Now().UTC().Truncate(time.Second)
	prog := func(seq int64, pct float64) []byte {
		p := &wire.Progress{JobID: j.ID, Seq: seq, Percent: pct}
		if seq == 1 {
			p.StartedAt = started
		}
		return mustEncode(t, p)
	}
	topic := func(kind string) wire.Topic { return wire.Topic{Host: "host-a", Kind: kind, Job: j.ID} }
	for _, step := range []struct {
		seq int64
		pct float64
	}{{1, 0}, {3, 30}, {2, 20}, {3, 30}} { // reordered and duplicated
		if err := f.Ingest(ctx, "host-a", topic(wire.KindProgress), prog(step.seq, step.pct)); err != nil {
			t.Fatalf("progress %d: %v", step.seq, err)
		}
	}
	// The first progress is stored; the later ones are live at once and
	// stored by the write-behind.
	got, _ := st.GetJob(j.ID)
	if got.Status != storage.JobRunning || got.Progress.Seq != 1 || !got.StartedAt.Equal(started) {
		t.Fatalf("stored after progress: status %s progress %+v started %v", got.Status, got.Progress, got.StartedAt)
	}
	if live := f.LiveJob(got); live.Progress.Seq != 3 || live.Progress.Percent != 30 {
		t.Fatalf("live after progress: %+v", live.Progress)
	}
	f.writeProgress()
	got, _ = st.GetJob(j.ID)
	if got.Progress.Seq != 3 || got.Progress.Percent != 30 {
		t.Fatalf("stored after the write-behind: %+v", got.Progress)
	}
	// Progress the write-behind has not stored yet goes with the result.
	if err := f.Ingest(ctx, "host-a", topic(wire.KindProgress), prog(4, 40)); err != nil {
		t.Fatal(err)
	}

	snap := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	res := mustEncode(t, &wire.Result{JobID: j.ID, Status: wire.StatusSucceeded, StartedAt: started, EndedAt: started.Add(time.Minute), SnapshotID: snap, Summary: []byte(`{"snapshot_id":"` + snap + `"}`)})
	for range 3 {
		if err := f.Ingest(ctx, "host-a", topic(wire.KindResult), res); err != nil {
			t.Fatalf("result: %v", err)
		}
	}
	// A different late result for the same job changes nothing either.
	late := mustEncode(t, &wire.Result{JobID: j.ID, Status: wire.StatusFailed, EndedAt: started.Add(time.Hour), Error: "late"})
	if err := f.Ingest(ctx, "host-a", topic(wire.KindResult), late); err != nil {
		t.Fatal(err)
	}
	// Progress after the result is ignored.
	if err := f.Ingest(ctx, "host-a", topic(wire.KindProgress), prog(9, 90)); err != nil {
		t.Fatal(err)
	}
	got, _ = st.GetJob(j.ID)
	if got.Status != storage.JobSucceeded || got.SnapshotID != snap || got.Error != "" || got.Progress.Seq != 4 {
		t.Fatalf("after duplicates: %+v", got)
	}
	h, _ := st.GetHost("host-a")
	if h.LastBackup == nil || h.LastBackup.JobID != j.ID || h.LastBackup.Status != storage.JobSucceeded {
		t.Fatalf("host last backup %+v", h.LastBackup)
	}

	// Another host cannot report on host-a's job.
	err = f.Ingest(ctx, "host-b", wire.Topic{Host: "host-b", Kind: wire.KindResult, Job: j.ID}, late)
	if !errors.Is(err, broker.ErrRejected) {
		t.Fatalf("foreign result: %v, want ErrRejected", err)
	}
	// Nor publish on host-a's topic.
	if err := f.Ingest(ctx, "host-b", topic(wire.KindResult), late); !errors.Is(err, broker.ErrRejected) {
		t.Fatalf("result on another host's topic: %v, want ErrRejected", err)
	}
}

func TestStatusOnlineRedispatchesQueuedJobs(t *testing.T) {
	f, st, rec := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	j, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobInit, Args: nil, ActorKind: "user", Actor: "admin"})
	if err != nil {
		t.Fatal(err)
	}
	// An expired queued job is marked expired instead of being sent.
	old, _ := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobInit, Args: nil, ActorKind: "user", Actor: "admin"})
	if _, err := st.UpdateJob(old.ID, func(j *storage.Job) error { j.ExpiresAt = time.Now().Add(-time.Minute); return nil }); err != nil {
		t.Fatal(err)
	}
	before := rec.Commands()
	status := mustEncode(t, &wire.Status{Online: true, StartedAt: time.Now().UTC()})
	if err := f.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindStatus}, status); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for rec.Commands() < before+1 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if rec.Commands() != before+1 {
		t.Fatalf("%d commands re-sent, want 1 (job %s)", rec.Commands()-before, j.ID)
	}
	for time.Now().Before(deadline) {
		if o, _ := st.GetJob(old.ID); o.Status == storage.JobExpired {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("expired job was not marked expired")
}
