package repos

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
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
func (rs *Repos) repoJobEnded(j storage.Job) {
	if j.Kind == wire.JobRotateKey {
		rs.rotationEnded(j)
	}
	ok := j.Status == storage.JobSucceeded || j.Status == storage.JobPartial
	_, err := rs.store.UpdateRepo(j.RepoID, func(r *storage.Repo) error {
		// The host the console asks for health next: one that may read
		// the repository (not the maintenance host after a prune).
		if ok && slices.Contains(r.Hosts, j.HostID) {
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
			if ok && json.Unmarshal(j.Args, &args) == nil && args.Prune && !args.DryRun {
				t := j.EndedAt
				h.LastPrune = &t
			}
		case wire.JobHealth:
			if ok {
				rs.applyHealth(r, j)
			}
		case wire.JobSnapshots:
			var args wire.SnapshotsArgs
			// Only an unfiltered list may replace the cache.
			if ok && json.Unmarshal(j.Args, &args) == nil && len(args.Hosts)+len(args.Tags)+len(args.Paths) == 0 {
				rs.cacheSnapshots(r, j.Output)
			}
		}
		return nil
	})
	if err != nil && !errors.Is(err, errNoChange) {
		rs.log.Warn("repository record not updated", "repo_id", j.RepoID, "job_id", j.ID, "error", err)
	}
	switch j.Kind {
	case wire.JobIndex:
		rs.indexEnded(j)
	case wire.JobForget:
		if ok && !dryRun(j) { // a preview deleted nothing
			rs.dropForgotten(j)
			rs.requestHealthSoon(j.RepoID, j.HostID)
		}
	case wire.JobHealth:
		rs.health.mu.Lock()
		again := false
		if rs.health.m[j.RepoID] == j.ID {
			delete(rs.health.m, j.RepoID)
			again = rs.health.dirty[j.RepoID]
			delete(rs.health.dirty, j.RepoID)
		}
		rs.health.mu.Unlock()
		if again {
			rs.requestHealth(j.RepoID, j.HostID)
		}
	case wire.JobBackup, wire.JobPrune, wire.JobUnlock, wire.JobInit:
		if ok {
			rs.requestHealthSoon(j.RepoID, j.HostID)
		}
	case wire.JobCopy:
		// Both lists change what the copy lag says (console/copies); the
		// copy's host may read the destination.
		if to := fleet.CopyDest(j.Kind, j.Args); ok && to != "" {
			rs.requestHealthSoon(j.RepoID, j.HostID)
			rs.requestHealthSoon(to, j.HostID)
		}
	}
}

// applyHealth folds a health job's output into the repository's health.
func (rs *Repos) applyHealth(r *storage.Repo, j storage.Job) {
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
		rs.cacheSnapshots(r, out.Snapshots)
	}
	h.UpdatedAt = j.EndedAt
}

func (rs *Repos) cacheSnapshots(r *storage.Repo, list json.RawMessage) {
	var snaps []json.RawMessage
	if err := json.Unmarshal(list, &snaps); err != nil {
		return
	}
	if r.Health == nil {
		r.Health = &storage.RepoHealth{}
	}
	r.Health.SnapshotCount = len(snaps)
	if err := rs.store.PutSnapshotCache(r.ID, list); err != nil {
		rs.log.Warn("snapshot cache not stored", "repo_id", r.ID, "error", err)
	}
}

// requestHealthSoon asks for a health report once the repository has been
// quiet for HealthDelay.
func (rs *Repos) requestHealthSoon(repoID, hostID string) {
	rs.health.mu.Lock()
	defer rs.health.mu.Unlock()
	if rs.health.timers == nil {
		rs.health.timers = map[string]*time.Timer{}
	}
	if t, ok := rs.health.timers[repoID]; ok {
		t.Stop()
	}
	rs.health.timers[repoID] = time.AfterFunc(rs.opts.HealthDelay, func() {
		rs.health.mu.Lock()
		delete(rs.health.timers, repoID)
		rs.health.mu.Unlock()
		if rs.ctx.Err() == nil {
			rs.requestHealth(repoID, hostID)
		}
	})
}

// requestHealth asks the host for a health report of the repository unless
// one is already on its way.
func (rs *Repos) requestHealth(repoID, hostID string) {
	rs.health.mu.Lock()
	if rs.health.m == nil {
		rs.health.m, rs.health.dirty = map[string]string{}, map[string]bool{}
	}
	if id, busy := rs.health.m[repoID]; busy {
		if j, err := rs.store.GetJob(id); err == nil && !storage.TerminalStatus(j.Status) {
			rs.health.dirty[repoID] = true
			rs.health.mu.Unlock()
			return
		}
	}
	rs.health.mu.Unlock()
	hostID = rs.healthHost(repoID, hostID)
	if hostID == "" {
		rs.log.Debug("health refresh not requested: no online host bound to the repository", "repo_id", repoID)
		return
	}
	j, err := rs.fleet.CreateJob(fleet.JobRequest{HostID: hostID, RepoID: repoID, Kind: wire.JobHealth, ActorKind: "system", Actor: "health", TimeoutS: 3600})
	if err != nil {
		rs.log.Warn("health refresh not requested", "repo_id", repoID, "host_id", hostID, "error", err)
		return
	}
	rs.health.mu.Lock()
	rs.health.m[repoID] = j.ID
	rs.health.mu.Unlock()
}

// healthHost is the host to ask for a repository's health: the preferred
// one if it is bound to the repository, else the last bound host that used
// it, else any bound host online; "" if there is none.
func (rs *Repos) healthHost(repoID, preferred string) string {
	rp, err := rs.store.GetRepo(repoID)
	if err != nil {
		return ""
	}
	for _, id := range []string{preferred, rp.LastHostID} {
		if id != "" && slices.Contains(rp.Hosts, id) {
			return id
		}
	}
	if preferred != "" && rs.fleet.MayReceive(repoID, preferred) { // bound through a policy (a copy's destination)
		return preferred
	}
	for _, id := range rp.Hosts {
		if h, err := rs.store.GetHost(id); err == nil && h.Online {
			return id
		}
	}
	return ""
}

// refreshStaleHealth asks for health of repositories not refreshed lately.
func (rs *Repos) refreshStaleHealth(ctx context.Context) {
	repos, err := rs.store.ListRepos()
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
		if h, err := rs.store.GetHost(r.LastHostID); err == nil && h.Online {
			rs.requestHealth(r.ID, r.LastHostID)
		} else {
			rs.requestHealth(r.ID, "") // another bound host, if one is online
		}
	}
}

// stopTimers stops the pending delayed refreshes (at Close).
func (h *healthJobs) stopTimers() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, t := range h.timers {
		t.Stop()
	}
}
