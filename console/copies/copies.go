// Package copies is the console's side of copies to a second repository
// (ARCHITECTURE.md, "Copies (3-2-1)"): the copy that follows a policy's
// backups, and how far each copy destination lags behind its source.
//
//	backup of host H into R ends ok ─▶ afterBackup: a policy matching H
//	  whose repository on H is R copies to D ─▶ claim the backup
//	  (storage.Job.CopyJobID: one copy per backup, however often its
//	  result arrives) ─▶ fleet.CreateJob(copy R→D, actor_kind "policy")
//	copy R→D ends ok ─▶ R.CopyTo gains D (repos asks both for health)
//	health (or a snapshot list) of R or D ends ─▶ Measure R against each
//	  destination from both cached snapshot lists ─▶ R.Health.CopyLag
//	alerts: copy_lag on R→D while missing > the policies' copy_lag_max
//
// Which backups a copy follows: any successful backup into the policy's
// repository by a host the policy matches, whoever started it (its
// schedule, a person's "Run now", a bulk run). The copy's point is that
// every snapshot of the host reaches the second site; a manual backup
// before a risky change is the one most worth having twice.
//
// It observes the fleet after console/repos (which caches the snapshot
// lists it reads); the fleet does not know it.
package copies

import (
	"encoding/json"
	"errors"
	"log/slog"
	"slices"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Policies is what copies read of the policies (console/policy).
type Policies interface {
	// CopyDest: the policy whose backups of h into repoID a copy follows.
	CopyDest(h storage.Host, repoID string) (storage.Policy, bool)
	// CopyDestsOf: where the policies using repoID copy it.
	CopyDestsOf(repoID string) []string
	// CopyLagMax: the copy_lag threshold for copies into a destination.
	CopyLagMax(dest string) int
}

// Copies makes the policies' copies and measures copy lag.
type Copies struct {
	f     *fleet.Fleet
	store *storage.Store
	pol   Policies
	log   *slog.Logger
}

// CopyTimeoutS bounds a policy's copy job (a first copy of a large
// repository moves all of it).
const CopyTimeoutS = 24 * 3600

// New wires copies into the fleet: register it after console/repos.
func New(f *fleet.Fleet, pol Policies, log *slog.Logger) *Copies {
	if log == nil {
		log = slog.Default()
	}
	c := &Copies{f: f, store: f.Store(), pol: pol, log: log.With("component", "copies")}
	f.OnJobEnd(c.JobEnded)
	return c
}

var errNoChange = errors.New("no change")

func ok(j storage.Job) bool {
	return j.Status == storage.JobSucceeded || j.Status == storage.JobPartial
}

// JobEnded is the copies' observer of a job's end.
func (c *Copies) JobEnded(j storage.Job) {
	if !ok(j) {
		return
	}
	switch j.Kind {
	case wire.JobBackup:
		c.afterBackup(j)
	case wire.JobCopy:
		to := fleet.CopyDest(j.Kind, j.Args)
		_, err := c.store.UpdateRepo(j.RepoID, func(r *storage.Repo) error {
			if to == "" || slices.Contains(r.CopyTo, to) {
				return errNoChange
			}
			r.CopyTo = append(r.CopyTo, to)
			return nil
		})
		if err != nil && !errors.Is(err, errNoChange) {
			c.log.Warn("copy destination not recorded", "repo_id", j.RepoID, "error", err)
		}
	case wire.JobHealth, wire.JobSnapshots:
		c.MeasureAround(j.RepoID)
	}
}

// afterBackup makes the copy a policy asks for after backup j, once.
func (c *Copies) afterBackup(j storage.Job) {
	if j.CopyJobID != "" {
		return
	}
	h, err := c.store.GetHost(j.HostID)
	if err != nil {
		return
	}
	pol, found := c.pol.CopyDest(h, j.RepoID)
	if !found {
		return
	}
	claimed := false
	_, err = c.store.UpdateJob(j.ID, func(x *storage.Job) error {
		if x.CopyJobID != "" {
			return errNoChange
		}
		x.CopyJobID, claimed = "pending", true
		return nil
	})
	if !claimed {
		if err != nil && !errors.Is(err, errNoChange) {
			c.log.Warn("copy after backup not claimed", "job_id", j.ID, "error", err)
		}
		return
	}
	args, _ := json.Marshal(wire.CopyArgs{ToRepoID: pol.CopyToRepoID})
	cp, err := c.f.CreateJob(fleet.JobRequest{HostID: j.HostID, RepoID: j.RepoID, Kind: wire.JobCopy, Args: args,
		ActorKind: "policy", Actor: pol.ID, TimeoutS: CopyTimeoutS})
	mark := cp.ID
	if err != nil {
		// The nightly catch-up (a copy schedule) or the next backup's copy
		// takes these snapshots along; the lag shows them meanwhile.
		c.log.Warn("copy after backup refused", "job_id", j.ID, "policy_id", pol.ID, "to_repo_id", pol.CopyToRepoID, "error", err)
		mark = "refused"
	}
	if _, err := c.store.UpdateJob(j.ID, func(x *storage.Job) error { x.CopyJobID = mark; return nil }); err != nil {
		c.log.Warn("copy after backup not recorded", "job_id", j.ID, "error", err)
	}
}

// MeasureAround measures the copy lag wherever repoID takes part: as a
// source against its destinations, and as the destination of others.
func (c *Copies) MeasureAround(repoID string) {
	c.Measure(repoID)
	repos, err := c.store.ListRepos()
	if err != nil {
		return
	}
	for _, r := range repos {
		if r.ID != repoID && (slices.Contains(r.CopyTo, repoID) || slices.Contains(c.pol.CopyDestsOf(r.ID), repoID)) {
			c.Measure(r.ID)
		}
	}
}

// Measure stores repoID's copy lag against each of its destinations (the
// ones copies went to, and those its policies name) whose snapshot list
// the console has.
func (c *Copies) Measure(repoID string) {
	r, err := c.store.GetRepo(repoID)
	if err != nil {
		return
	}
	dests := slices.Clone(r.CopyTo)
	for _, d := range c.pol.CopyDestsOf(repoID) {
		if !slices.Contains(dests, d) {
			dests = append(dests, d)
		}
	}
	if len(dests) == 0 {
		return
	}
	raw, err := c.store.SnapshotCache(repoID)
	if err != nil {
		return
	}
	src, err := ParseSnapshots(raw)
	if err != nil {
		c.log.Warn("snapshot list unreadable", "repo_id", repoID, "error", err)
		return
	}
	now := time.Now().UTC()
	var lags []storage.CopyLag
	for _, d := range dests {
		raw, err := c.store.SnapshotCache(d)
		if err != nil {
			continue // not listed yet: unknown, not zero
		}
		dst, err := ParseSnapshots(raw)
		if err != nil {
			continue
		}
		l := Lag(src, dst)
		l.ToRepoID, l.Max, l.At = d, c.pol.CopyLagMax(d), now
		lags = append(lags, l)
	}
	_, err = c.store.UpdateRepo(repoID, func(r *storage.Repo) error {
		if r.Health == nil {
			r.Health = &storage.RepoHealth{}
		}
		r.Health.CopyLag = lags
		return nil
	})
	if err != nil {
		c.log.Warn("copy lag not stored", "repo_id", repoID, "error", err)
	}
}
