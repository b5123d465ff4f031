package progress

import (
	"errors"
	"testing"

	"github.com/restic-manager/restic-manager/storage"
)

func at(seq int64) func(*storage.Job) {
	return func(j *storage.Job) { j.Progress = &storage.Progress{Seq: seq, Percent: float64(seq)} }
}

// A cached job takes newer progress only, from its own host; what is
// pending is handed out once, again after a failed write, and overlays a
// stored record that is older.
func TestCache(t *testing.T) {
	c := New()
	if _, ok, _, _ := c.Update("job-1", "host-a", 2, at(2)); ok {
		t.Fatal("an uncached job was updated: its first progress must be stored")
	}
	c.Put(storage.Job{ID: "job-1", HostID: "host-a", Status: storage.JobRunning, Progress: &storage.Progress{Seq: 1}})
	c.Put(storage.Job{ID: "job-done", HostID: "host-a", Status: storage.JobSucceeded})
	if c.Len() != 1 {
		t.Fatalf("%d cached, want 1 (an ended job is not)", c.Len())
	}
	if _, _, _, err := c.Update("job-1", "host-b", 5, at(5)); !errors.Is(err, ErrOtherHost) {
		t.Fatalf("another host's progress: %v", err)
	}
	if j, ok, changed, err := c.Update("job-1", "host-a", 3, at(3)); !ok || !changed || err != nil || j.Progress.Seq != 3 {
		t.Fatalf("newer progress: %+v %v %v %v", j.Progress, ok, changed, err)
	}
	if _, _, changed, _ := c.Update("job-1", "host-a", 2, at(2)); changed {
		t.Fatal("older progress applied")
	}
	stored := storage.Job{ID: "job-1", Status: storage.JobRunning, Progress: &storage.Progress{Seq: 1}}
	c.Overlay(&stored)
	if stored.Progress.Seq != 3 {
		t.Fatalf("overlay: %+v", stored.Progress)
	}
	p := c.TakeDirty()
	if len(p) != 1 || p[0].Progress.Seq != 3 || len(c.TakeDirty()) != 0 {
		t.Fatalf("pending %+v", p)
	}
	// Taken for writing, not yet stored: a result that ends the job now
	// must still find the newest progress (the write may land after it).
	if lp := c.Latest("job-1"); lp == nil || lp.Seq != 3 {
		t.Fatalf("progress in flight to the store: Latest %+v, want seq 3", lp)
	}
	c.Requeue(p[0])
	if again := c.TakeDirty(); len(again) != 1 {
		t.Fatalf("requeued %+v", again)
	}
	c.Drop("job-1")
	if c.Len() != 0 || c.Latest("job-1") != nil {
		t.Fatal("dropped job still cached")
	}
}
