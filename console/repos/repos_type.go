// Package repos is what the console keeps of each repository beyond its
// jobs: the repository records and their access lists, their health
// (refreshed by the console's own health jobs), the cached snapshot list
// and the snapshot indexes that browsing reads. It observes the fleet (the
// end of every job) and asks it for jobs; it speaks no HTTP.
package repos

import (
	"context"
	"errors"
	"log/slog"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/loop"
	"github.com/restic-manager/restic-manager/storage"
)

// Options configure Repos.
type Options struct {
	Fleet  *fleet.Fleet
	Logger *slog.Logger
	// HealthDelay: a repository's health is refreshed once it has been
	// quiet this long after a change (default 30s).
	HealthDelay time.Duration
}

// Repos keeps repositories, their health and their snapshot indexes.
type Repos struct {
	opts  Options
	fleet *fleet.Fleet
	store *storage.Store
	log   *slog.Logger

	// health tracks the health job in flight per repository.
	health healthJobs
	// indexing maps repo/snapshot to its index job in flight.
	indexMu  sync.Mutex
	indexing map[string]string
	// indexCount bounds what each index job may store.
	indexCount nodeCounts

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
}

// New starts Repos: it observes every job's end and takes the fleet's
// index output; Close stops it.
func New(opts Options) *Repos {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.HealthDelay == 0 {
		opts.HealthDelay = 30 * time.Second
	}
	rs := &Repos{opts: opts, fleet: opts.Fleet, store: opts.Fleet.Store(), log: opts.Logger.With("component", "repos"),
		indexing: map[string]string{}}
	rs.ctx, rs.cancel = context.WithCancel(context.Background())
	opts.Fleet.OnJobEnd(rs.repoJobEnded)
	opts.Fleet.HandleOutput(rs.ingestOutput)
	rs.bg.Add(1)
	go func() {
		defer rs.bg.Done()
		loop.Every(rs.ctx, time.Minute, time.Minute, rs.refreshStaleHealth)
	}()
	return rs
}

// Close stops the refreshes.
func (rs *Repos) Close() {
	rs.health.stopTimers()
	rs.cancel()
	rs.bg.Wait()
}

// errNoChange ends a store update function without writing.
var errNoChange = errors.New("no change")
