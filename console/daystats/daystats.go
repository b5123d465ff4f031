// Package daystats counts each day's backups across the fleet (succeeded,
// failed, data added) for the dashboard's charts. It observes the end of
// every job and keeps the counts in memory, adding them to the store every
// flushEvery (one small transaction, however many jobs ended): a crash
// loses at most that much of a chart, never a job.
package daystats

import (
	"context"
	"encoding/json"
	"log/slog"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

const flushEvery = 30 * time.Second

// Counter adds ended backups to their day's counts.
type Counter struct {
	store *storage.Store
	log   *slog.Logger

	mu      sync.Mutex
	pending map[string]*storage.DayStats

	cancel context.CancelFunc
	done   chan struct{}
}

// New starts counting the fleet's backups; Close writes what is pending
// and stops.
func New(f *fleet.Fleet, log *slog.Logger) *Counter {
	ctx, cancel := context.WithCancel(context.Background())
	c := &Counter{store: f.Store(), log: log.With("component", "daystats"), pending: map[string]*storage.DayStats{},
		cancel: cancel, done: make(chan struct{})}
	f.OnJobEnd(c.ended)
	go c.loop(ctx)
	return c
}

// ended counts a backup by the day it ended (UTC). A job's end is
// observed once (the fleet calls its observers when a result changed the
// job), so a redelivered result is not counted twice.
func (c *Counter) ended(j storage.Job) {
	if j.Kind != wire.JobBackup || j.EndedAt.IsZero() {
		return
	}
	var s struct {
		DataAdded uint64 `json:"data_added"`
	}
	_ = json.Unmarshal(j.Summary, &s)
	day := j.EndedAt.UTC().Format("2006-01-02")
	c.mu.Lock()
	defer c.mu.Unlock()
	d := c.pending[day]
	if d == nil {
		d = &storage.DayStats{Day: day}
		c.pending[day] = d
	}
	switch j.Status {
	case storage.JobSucceeded, storage.JobPartial:
		d.BackupsOK++
		d.DataAdded += s.DataAdded
	case storage.JobFailed, storage.JobExpired:
		d.BackupsFailed++
	}
}

func (c *Counter) loop(ctx context.Context) {
	defer close(c.done)
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			c.Flush()
			return
		case <-t.C:
			c.Flush()
		}
	}
}

// Flush adds the pending counts to the store now.
func (c *Counter) Flush() {
	c.mu.Lock()
	add := make([]storage.DayStats, 0, len(c.pending))
	for _, d := range c.pending {
		add = append(add, *d)
	}
	c.pending = map[string]*storage.DayStats{}
	c.mu.Unlock()
	if err := c.store.AddDayStats(add); err != nil {
		c.log.Warn("backup counts not stored; kept for the next try", "error", err)
		c.mu.Lock()
		for _, a := range add {
			d := c.pending[a.Day]
			if d == nil {
				d = &storage.DayStats{Day: a.Day}
				c.pending[a.Day] = d
			}
			d.BackupsOK += a.BackupsOK
			d.BackupsFailed += a.BackupsFailed
			d.DataAdded += a.DataAdded
		}
		c.mu.Unlock()
	}
}

// Close writes what is pending and stops.
func (c *Counter) Close() {
	c.cancel()
	<-c.done
}
