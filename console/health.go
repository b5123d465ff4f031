package console

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// healthEvery is how often a repository's health is refreshed when nothing
// changed it.
const healthEvery = time.Hour

// healthJobs tracks the health job in flight per repository, so a burst of
// backups asks for one refresh, not one each.
type healthJobs struct {
	mu sync.Mutex
	m  map[string]string // repo → job in flight
	// timers delay a refresh until the repository has been quiet for
	// HealthDelay, so a burst of jobs is not slowed by refreshes between
	// them (the agent runs one job per repository at a time).
	timers map[string]*time.Timer
	// dirty: the repository changed while its health job was in flight, so
	// that report is already stale; ask again when it ends.
	dirty map[string]bool
}

// repoJobEnded keeps the repository's record current after one of its jobs
// ended: who can reach it, last check and prune, and (after jobs that change
// the repository) a health refresh.
func (c *Console) repoJobEnded(j storage.Job) {
	ok := j.Status == storage.JobSucceeded || j.Status == storage.JobPartial
	_, err := c.store.UpdateRepo(j.RepoID, func(r *storage.Repo) error {
		if ok {
			r.LastHostID = j.HostID
		}
		if r.Health == nil {
			r.Health = &storage.RepoHealth{}
		}
		h := r.Health
		switch j.Kind {
		case wire.JobCheck:
			if j.Status == storage.JobCancelled || j.Status == storage.JobExpired {
				return errNoChange
			}
			var out struct {
				OK        bool `json:"ok"`
				NumErrors int  `json:"num_errors"`
			}
			_ = json.Unmarshal(j.Output, &out)
			h.LastCheck = &storage.CheckMark{At: j.EndedAt, OK: j.Status == storage.JobSucceeded && out.OK, JobID: j.ID, Errors: out.NumErrors}
		case wire.JobPrune:
			if ok {
				t := j.EndedAt
				h.LastPrune = &t
			}
		case wire.JobForget:
			var args wire.ForgetArgs
			if ok && json.Unmarshal(j.Args, &args) == nil && args.Prune {
				t := j.EndedAt
				h.LastPrune = &t
			}
		case wire.JobHealth:
			if ok {
				c.applyHealth(r, j)
			}
		case wire.JobSnapshots:
			var args wire.SnapshotsArgs
			// Only an unfiltered list may replace the cache.
			if ok && json.Unmarshal(j.Args, &args) == nil && len(args.Hosts)+len(args.Tags)+len(args.Paths) == 0 {
				c.cacheSnapshots(r, j.Output)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		c.log.Warn("repository record not updated", "repo_id", j.RepoID, "job_id", j.ID, "error", err)
	}
	switch j.Kind {
	case wire.JobIndex:
		c.indexEnded(j)
	case wire.JobForget:
		if ok {
			c.dropForgotten(j)
			c.requestHealthSoon(j.RepoID, j.HostID)
		}
	case wire.JobHealth:
		c.health.mu.Lock()
		again := false
		if c.health.m[j.RepoID] == j.ID {
			delete(c.health.m, j.RepoID)
			again = c.health.dirty[j.RepoID]
			delete(c.health.dirty, j.RepoID)
		}
		c.health.mu.Unlock()
		if again {
			c.requestHealth(j.RepoID, j.HostID)
		}
	case wire.JobBackup, wire.JobPrune, wire.JobUnlock, wire.JobInit:
		if ok {
			c.requestHealthSoon(j.RepoID, j.HostID)
		}
	}
}

// applyHealth folds a health job's output into the repository's health.
func (c *Console) applyHealth(r *storage.Repo, j storage.Job) {
	var out wire.HealthOutput
	if err := json.Unmarshal(j.Output, &out); err != nil {
		return
	}
	h := r.Health
	var raw struct {
		TotalSize             uint64  `json:"total_size"`
		TotalUncompressedSize uint64  `json:"total_uncompressed_size"`
		CompressionRatio      float64 `json:"compression_ratio"`
	}
	var restore struct {
		TotalSize uint64 `json:"total_size"`
	}
	if json.Unmarshal(out.RawData, &raw) == nil && raw.TotalSize > 0 {
		h.SizeBytes, h.UncompressedBytes, h.CompressionRatio = raw.TotalSize, raw.TotalUncompressedSize, raw.CompressionRatio
		h.SizeHistory = append(h.SizeHistory, storage.SizePoint{At: j.EndedAt, Bytes: raw.TotalSize})
		if n := len(h.SizeHistory); n > storage.MaxSizeHistory {
			h.SizeHistory = h.SizeHistory[n-storage.MaxSizeHistory:]
		}
	}
	if json.Unmarshal(out.RestoreSize, &restore) == nil {
		h.RestoreSizeBytes = restore.TotalSize
		// Dedup ratio: what a restore of every snapshot would write over
		// what the repository stores (before compression).
		base := h.UncompressedBytes
		if base == 0 {
			base = h.SizeBytes
		}
		if base > 0 {
			h.DedupRatio = float64(restore.TotalSize) / float64(base)
		}
	}
	var locks []struct {
		Time  time.Time `json:"time"`
		Stale bool      `json:"stale"`
	}
	if json.Unmarshal(out.Locks, &locks) == nil {
		h.Locks = storage.LockState{Count: len(locks)}
		for _, l := range locks {
			if age := j.EndedAt.Sub(l.Time).Seconds(); age > h.Locks.OldestAgeS {
				h.Locks.OldestAgeS = age
			}
			if l.Stale {
				h.Locks.Stale++
			}
		}
	}
	if len(out.Snapshots) > 0 {
		c.cacheSnapshots(r, out.Snapshots)
	}
	h.UpdatedAt = j.EndedAt
}

func (c *Console) cacheSnapshots(r *storage.Repo, list json.RawMessage) {
	var snaps []json.RawMessage
	if err := json.Unmarshal(list, &snaps); err != nil {
		return
	}
	if r.Health == nil {
		r.Health = &storage.RepoHealth{}
	}
	r.Health.SnapshotCount = len(snaps)
	if err := c.store.PutSnapshotCache(r.ID, list); err != nil {
		c.log.Warn("snapshot cache not stored", "repo_id", r.ID, "error", err)
	}
}

// requestHealthSoon asks for a health report once the repository has been
// quiet for HealthDelay.
func (c *Console) requestHealthSoon(repoID, hostID string) {
	c.health.mu.Lock()
	defer c.health.mu.Unlock()
	if c.health.timers == nil {
		c.health.timers = map[string]*time.Timer{}
	}
	if t, ok := c.health.timers[repoID]; ok {
		t.Stop()
	}
	c.health.timers[repoID] = time.AfterFunc(c.opts.HealthDelay, func() {
		c.health.mu.Lock()
		delete(c.health.timers, repoID)
		c.health.mu.Unlock()
		if c.bgCtx.Err() == nil {
			c.requestHealth(repoID, hostID)
		}
	})
}

// requestHealth asks the host for a health report of the repository unless
// one is already on its way.
func (c *Console) requestHealth(repoID, hostID string) {
	c.health.mu.Lock()
	if c.health.m == nil {
		c.health.m, c.health.dirty = map[string]string{}, map[string]bool{}
	}
	if id, busy := c.health.m[repoID]; busy {
		if j, err := c.store.GetJob(id); err == nil && !storage.TerminalStatus(j.Status) {
			c.health.dirty[repoID] = true
			c.health.mu.Unlock()
			return
		}
	}
	c.health.mu.Unlock()
	j, _, err := c.newJob(jobRequest{HostID: hostID, RepoID: repoID, Kind: wire.JobHealth, ActorKind: "system", Actor: "health", TimeoutS: 3600})
	if err != nil {
		c.log.Warn("health refresh not requested", "repo_id", repoID, "host_id", hostID, "error", err)
		return
	}
	c.health.mu.Lock()
	c.health.m[repoID] = j.ID
	c.health.mu.Unlock()
}

// refreshStaleHealth asks for health of repositories not refreshed lately.
func (c *Console) refreshStaleHealth(ctx context.Context) {
	repos, err := c.store.ListRepos()
	if err != nil {
		return
	}
	for _, r := range repos {
		if ctx.Err() != nil || r.LastHostID == "" {
			continue
		}
		if r.Health != nil && time.Since(r.Health.UpdatedAt) < healthEvery {
			continue
		}
		if h, err := c.store.GetHost(r.LastHostID); err == nil && h.Online {
			c.requestHealth(r.ID, r.LastHostID)
		}
	}
}

// apiRepoSnapshots serves the cached snapshot list, optionally for one host.
func (c *Console) apiRepoSnapshots(w http.ResponseWriter, r *http.Request) {
	rp, err := c.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	raw, err := c.store.SnapshotCache(rp.ID)
	if errors.Is(err, storage.ErrNotFound) {
		raw = []byte("[]")
	} else if err != nil {
		c.fail(w, r, err)
		return
	}
	var snaps []map[string]any
	if err := json.Unmarshal(raw, &snaps); err != nil {
		c.fail(w, r, err)
		return
	}
	if hostID := r.URL.Query().Get("host_id"); hostID != "" {
		h, err := c.store.GetHost(hostID)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		kept := snaps[:0]
		for _, s := range snaps {
			if s["hostname"] == h.Hostname {
				kept = append(kept, s)
			}
		}
		snaps = kept
	}
	if snaps == nil {
		snaps = []map[string]any{}
	}
	writeJSON(w, http.StatusOK, snaps)
}
