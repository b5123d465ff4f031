// Package progress keeps the latest progress of each running job in
// memory and hands it out to be written behind ("Durability tiers" in
// ARCHITECTURE.md): progress reaches SSE watchers at once, the store about
// once a second per job and always before the job's result. A crash may
// lose the last second of a job's progress and nothing else. Storing every
// progress message before its PUBACK made progress the ingest's ceiling:
// about 1,500 QoS-1 messages/s on this machine against a bare broker's
// several thousand.
package progress

import (
	"errors"
	"sync"

	"github.com/restic-manager/restic-manager/storage"
)

// ErrOtherHost: a host sent progress for a job that is not its own.
var ErrOtherHost = errors.New("the job belongs to another host")

// Cache holds the running jobs that have sent progress, each as its last
// stored record with the newest progress applied.
type Cache struct {
	mu   sync.Mutex
	jobs map[string]*entry
}

type entry struct {
	job   storage.Job
	dirty bool // progress newer than the store's
}

// New returns an empty cache.
func New() *Cache { return &Cache{jobs: map[string]*entry{}} }

func seqOf(j *storage.Job) int64 {
	if j.Progress == nil {
		return 0
	}
	return j.Progress.Seq
}

// Update applies a progress message to a cached job. ok is false when the
// job is not cached (its first progress goes through the store); changed
// is false for a duplicate or reordered message (seq not newer). The job
// returned is a copy with the progress applied.
func (c *Cache) Update(jobID, host string, seq int64, apply func(*storage.Job)) (j storage.Job, ok, changed bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e := c.jobs[jobID]
	if e == nil {
		return storage.Job{}, false, false, nil
	}
	if e.job.HostID != host {
		return storage.Job{}, true, false, ErrOtherHost
	}
	if seq <= seqOf(&e.job) {
		return e.job, true, false, nil
	}
	apply(&e.job)
	e.dirty = true
	return e.job, true, true, nil
}

// Put caches a running job just stored with its progress (its first, or
// one after a restart). A newer cached one is kept.
func (c *Cache) Put(j storage.Job) {
	if storage.TerminalStatus(j.Status) {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.jobs[j.ID]; e != nil && seqOf(&e.job) >= seqOf(&j) {
		return
	}
	c.jobs[j.ID] = &entry{job: j}
}

// Latest returns the newest progress known for a cached job (nil when
// none): the caller keeps it when its Seq is newer than the store's. It is
// returned whether or not a write of it is pending or in flight: between
// TakeDirty and that write's commit the store still has older progress, and
// a result stored meanwhile with the store's progress lost the newest (the
// late write then finds the job ended and is dropped; fleetsim saw 7 of
// 1,000 streamed jobs end so).
func (c *Cache) Latest(jobID string) *storage.Progress {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.jobs[jobID]; e != nil && e.job.Progress != nil {
		p := *e.job.Progress
		return &p
	}
	return nil
}

// Drop forgets a job (it ended).
func (c *Cache) Drop(jobID string) {
	c.mu.Lock()
	delete(c.jobs, jobID)
	c.mu.Unlock()
}

// Pending is one job's progress to write.
type Pending struct {
	JobID    string
	Progress storage.Progress
	Waited   bool
}

// TakeDirty returns the progress not yet written and marks it written; a
// write that fails puts it back with Requeue.
func (c *Cache) TakeDirty() []Pending {
	c.mu.Lock()
	defer c.mu.Unlock()
	var out []Pending
	for id, e := range c.jobs {
		if e.dirty && e.job.Progress != nil {
			out = append(out, Pending{JobID: id, Progress: *e.job.Progress, Waited: e.job.Waited})
			e.dirty = false
		}
	}
	return out
}

// Requeue marks a job's progress unwritten again (its write failed),
// unless newer progress came meanwhile (which is dirty anyway).
func (c *Cache) Requeue(p Pending) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if e := c.jobs[p.JobID]; e != nil && seqOf(&e.job) == p.Progress.Seq {
		e.dirty = true
	}
}

// Len is how many jobs are cached.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.jobs)
}

// Overlay puts newer cached progress onto a job read from the store (for
// readers that want the live state: GET /jobs/{id}, the SSE stream's
// first event).
func (c *Cache) Overlay(j *storage.Job) {
	if storage.TerminalStatus(j.Status) {
		return
	}
	if p := c.Latest(j.ID); p != nil && p.Seq > seqOf(j) {
		j.Progress = p
	}
}
