package fleet

import (
	"context"
	"encoding/json"
	"slices"
	"time"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A repository's secrets reach only the hosts bound to it: those on its
// access list (which an admin keeps, directly or by giving a host a
// schedule on it), and its maintenance host for destructive work. No job
// of any kind — a person's, a schedule's, the console's own health and
// index jobs — is sent to any other host: newJob refuses it and dispatch,
// where the secrets leave, checks again.

// PolicyBinder reports whether a policy matching host h uses the
// repository (console/policy sets it): such a host is bound to it too.
type PolicyBinder func(h storage.Host, repoID string) bool

// SetPolicyBinder sets the policies' part of binding (before the broker
// serves).
func (f *Fleet) SetPolicyBinder(b PolicyBinder) { f.binder.Store(&b) }

// SetForgetGuard sets where a forget's guard threshold comes from (a
// policy's, for the forgets its schedules make); 0 means the console's.
func (f *Fleet) SetForgetGuard(fn func(storage.Job) int) { f.guard.Store(&fn) }

// guardPercent is the share of its host's snapshots forget j may remove
// without an admin's approval.
func (f *Fleet) guardPercent(j storage.Job) int {
	if g := f.guard.Load(); g != nil {
		if p := (*g)(j); p > 0 {
			return p
		}
	}
	return f.opts.ForgetGuardPercent
}

// bound reports why host h may not receive rp for a job of this kind, or
// nil when it may.
func (f *Fleet) bound(rp storage.Repo, h storage.Host, kind string, args json.RawMessage) error {
	if rp.MaintenanceHostID != "" && h.ID == rp.MaintenanceHostID && wire.Destructive(kind, args) {
		return nil
	}
	if slices.Contains(rp.Hosts, h.ID) {
		return nil
	}
	if b := f.binder.Load(); b != nil && (*b)(h, rp.ID) {
		return nil
	}
	return Invalid("host %s is not bound to repository %s (%s): an admin adds it to the repository's hosts, or a policy matching its labels uses it", h.ID, rp.Name, rp.ID)
}

// BindHost adds hostID to a repository's access list (an admin's action).
func (f *Fleet) BindHost(repoID, hostID string) error {
	if _, err := f.store.GetHost(hostID); err != nil {
		return err
	}
	_, err := f.store.UpdateRepo(repoID, func(r *storage.Repo) error {
		if slices.Contains(r.Hosts, hostID) {
			return errNoChange
		}
		r.Hosts = append(r.Hosts, hostID)
		r.HostsListed = true
		return nil
	})
	if err == errNoChange {
		return nil
	}
	return err
}

// listAccess gives repositories from before access lists theirs, once: the
// hosts whose schedules use them and those that ran any non-destructive
// job on them (what they could already receive), so an upgrade takes no
// working backup away and grants nothing new.
func (f *Fleet) listAccess(ctx context.Context) error {
	repos, err := f.store.ListRepos()
	if err != nil {
		return err
	}
	todo := map[string]map[string]bool{}
	for _, r := range repos {
		if !r.HostsListed {
			todo[r.ID] = map[string]bool{}
		}
	}
	if len(todo) == 0 {
		return nil
	}
	start := time.Now()
	f.EachHost(ctx, func(h storage.Host) {
		hs, err := f.store.GetSchedules(h.ID)
		if err != nil {
			return
		}
		for _, s := range hs.Schedules {
			if set, ok := todo[s.RepoID]; ok {
				set[h.ID] = true
			}
		}
	})
	err = f.eachJob(ctx, storage.JobQuery{}, func(j storage.Job) bool {
		if set, ok := todo[j.RepoID]; ok && !wire.Destructive(j.Kind, j.Args) {
			set[j.HostID] = true
		}
		return true
	})
	if err != nil {
		return err
	}
	for id, set := range todo {
		_, err := f.store.UpdateRepo(id, func(r *storage.Repo) error {
			for h := range set {
				if !slices.Contains(r.Hosts, h) {
					r.Hosts = append(r.Hosts, h)
				}
			}
			slices.Sort(r.Hosts)
			r.HostsListed = true
			return nil
		})
		if err != nil {
			return err
		}
		f.log.Info("repository access list made from its history", "repo_id", id, "hosts", len(set))
	}
	f.log.Info("access lists made", "repos", len(todo), "took", time.Since(start).Round(time.Millisecond))
	return nil
}
