package storage

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// groupSync makes committed transactions durable with one sync for every
// transaction that committed while the previous sync ran (group commit).
//
// Badger's own SyncWrites syncs the memtable's write-ahead log once per
// transaction, one after another in its single writer goroutine, which
// capped the console's ingest at roughly one agent message per fsync
// (~1,900/s here) however many agents published at once. With SyncWrites
// off and this group commit, a burst of N commits costs one sync.
//
// db.Sync covers the current memtable's log and value-log file. A
// transaction that landed in a memtable or value-log file that Badger
// rotated before the sync ran would not be covered, so whenever the
// database directory changed since the last round (files are created on
// rotation), every .mem and .vlog file is synced as well.
type groupSync struct {
	db  *badger.DB
	dir string

	mu      sync.Mutex
	cond    *sync.Cond
	started uint64 // rounds begun
	done    uint64 // rounds finished
	running bool
	err     error // the first failed round's; every later wait returns it

	lastDir time.Time // the directory's mtime at the last full sync
}

func newGroupSync(db *badger.DB, dir string) *groupSync {
	g := &groupSync{db: db, dir: dir}
	g.cond = sync.NewCond(&g.mu)
	return g
}

// wait returns once a sync that began after the caller's commit finished.
func (g *groupSync) wait() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	// A round already running may have begun before our commit: we need
	// the one after it.
	need := g.started + 1
	for g.done < need {
		if !g.running {
			g.running = true
			g.started++
			round := g.started
			g.mu.Unlock()
			err := g.syncOnce()
			g.mu.Lock()
			g.running = false
			g.done = round
			if err != nil && g.err == nil {
				// Sticky: after a failed fsync the kernel may have dropped
				// the dirty pages, and a later fsync can succeed without
				// them; no write may be reported durable from then on.
				g.err = err
			}
			g.cond.Broadcast()
			continue
		}
		g.cond.Wait()
	}
	return g.err
}

func (g *groupSync) syncOnce() error {
	if err := g.db.Sync(); err != nil {
		return fmt.Errorf("storage: sync: %w", err)
	}
	fi, err := os.Stat(g.dir)
	if err != nil {
		return fmt.Errorf("storage: sync: %w", err)
	}
	// File timestamps are coarse (a few ms): a change in the same tick as
	// the last look would not move mtime, so stay thorough for a moment.
	if mt := fi.ModTime(); !mt.Equal(g.lastDir) || time.Since(mt) < 50*time.Millisecond {
		if err := g.syncFiles(); err != nil {
			return err
		}
		g.lastDir = mt
	}
	return nil
}

// syncAll syncs everything at once (after a bulk load).
func (g *groupSync) syncAll() error {
	if err := g.db.Sync(); err != nil {
		return fmt.Errorf("storage: sync: %w", err)
	}
	return g.syncFiles()
}

// syncFiles fsyncs every memtable log and value-log file and the directory.
func (g *groupSync) syncFiles() error {
	ents, err := os.ReadDir(g.dir)
	if err != nil {
		return fmt.Errorf("storage: sync: %w", err)
	}
	var errs []error
	for _, e := range ents {
		n := e.Name()
		if !strings.HasSuffix(n, ".mem") && !strings.HasSuffix(n, ".vlog") {
			continue
		}
		f, err := os.OpenFile(filepath.Join(g.dir, n), os.O_RDWR, 0)
		if errors.Is(err, os.ErrNotExist) {
			continue // flushed and removed meanwhile: its table is synced
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		if err := f.Sync(); err != nil {
			errs = append(errs, err)
		}
		f.Close()
	}
	if d, err := os.Open(g.dir); err == nil {
		if err := d.Sync(); err != nil {
			errs = append(errs, err)
		}
		d.Close()
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("storage: sync: %w", err)
	}
	return nil
}
