package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// applyGrace is how long an online host may take to apply a new version
// before it is flagged.
const applyGrace = 3 * time.Minute

// PutSchedules replaces a host's own schedules: validated, stored as a new
// version and published as the host's retained desired state. A schedule
// without an ID is new; one with an ID must exist already. A schedule may
// use only a repository the host is bound to; with bind (an admin's call)
// the host is bound to the repositories its schedules name.
func (f *Fleet) PutSchedules(hostID string, in []schedules.Schedule, bind bool) (storage.HostSchedules, error) {
	// Schedules a policy gives the host are the policy's to change: a set
	// read from GET (own and policy-made together) and sent back keeps
	// only the host's own.
	own := []schedules.Schedule{}
	for _, s := range in {
		if s.PolicyID == "" {
			own = append(own, s)
		}
	}
	in = own
	if _, err := f.store.GetHost(hostID); err != nil {
		return storage.HostSchedules{}, err
	}
	if err := schedules.ValidateSet(in); err != nil {
		return storage.HostSchedules{}, Invalid("%v", err)
	}
	var unbound []string
	for _, s := range in {
		ids := []string{s.RepoID}
		if s.Kind == wire.JobCopy { // a copy writes its destination too
			if s.ToRepoID == s.RepoID {
				return storage.HostSchedules{}, Invalid("schedule %q: a copy's destination must be another repository than its source", s.Name)
			}
			ids = append(ids, s.ToRepoID)
		}
		for _, id := range ids {
			if id == "" {
				continue
			}
			rp, err := f.store.GetRepo(id)
			if err != nil {
				return storage.HostSchedules{}, Invalid("schedule %q: repository %q does not exist", s.Name, id)
			}
			if slices.Contains(rp.Hosts, hostID) || slices.Contains(unbound, rp.ID) {
				continue
			}
			if !bind {
				return storage.HostSchedules{}, Invalid("schedule %q: host %s is not bound to repository %s (%s): an admin binds it", s.Name, hostID, rp.Name, rp.ID)
			}
			unbound = append(unbound, rp.ID)
		}
	}
	for _, id := range unbound {
		if err := f.BindHost(id, hostID); err != nil {
			return storage.HostSchedules{}, err
		}
		f.log.Info("host bound to a repository by its schedule", "host_id", hostID, "repo_id", id)
	}
	hs, err := f.store.UpdateSchedules(hostID, func(hs *storage.HostSchedules) error {
		known := map[string]bool{}
		for _, s := range hs.Schedules {
			known[s.ID] = true
		}
		out := make([]schedules.Schedule, len(in))
		for i, s := range in {
			switch {
			case s.ID == "":
				s.ID = token.NewID("sch")
			case !known[s.ID]:
				return Invalid("schedule %q: unknown id %q (omit the id to create a schedule)", s.Name, s.ID)
			}
			out[i] = s
		}
		hs.Schedules = out
		hs.Version++
		hs.UpdatedAt = time.Now().UTC()
		return nil
	})
	if err != nil {
		return hs, err
	}
	if err := f.publishDesired(hs); err != nil {
		// Stored: it is published again when the host next comes online.
		f.log.Error("publish desired schedules", "host_id", hostID, "version", hs.Version, "error", err)
	}
	return hs, nil
}

// SchedulePending flags an online host that has not applied the current
// version within applyGrace of the change.
func SchedulePending(hs storage.HostSchedules, online bool, now time.Time) bool {
	return online && hs.AppliedVersion < hs.Version && now.Sub(hs.UpdatedAt) > applyGrace
}

// publishDesired sends the retained desired state: only what the agent
// needs to fire, no paths and no secrets.
func (f *Fleet) publishDesired(hs storage.HostSchedules) error {
	d := wire.SchedulesDesired{Version: hs.Version, Schedules: []wire.ScheduleEntry{}}
	for _, s := range hs.Effective() {
		d.Schedules = append(d.Schedules, s.Entry())
	}
	b, err := wire.Encode(&d)
	if err != nil {
		return err
	}
	return f.pub.Publish(wire.SchedulesDesiredTopic(hs.HostID), b, true, 0)
}

func (f *Fleet) ingestReported(host string, payload []byte) error {
	r, err := wire.DecodeSchedulesReported(payload)
	if err != nil {
		return err
	}
	err = f.store.UpdateApplied(host, func(desired int64, a *storage.Applied) error {
		if r.Version <= a.Version && a.Version != 0 {
			return errNoChange // stale or repeated report
		}
		if r.Version > desired {
			f.log.Warn("host reports a schedule version the console never published", "host_id", host, "reported", r.Version, "desired", desired)
			return errNoChange
		}
		// The agent's clock, within maxSkew of the console's.
		a.Version, a.At = r.Version, clampTime(r.AppliedAt, time.Now())
		a.Skipped = nil
		for _, s := range r.Skipped {
			a.Skipped = append(a.Skipped, storage.SkippedSchedule{ID: s.ID, Reason: s.Reason})
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reported schedules of %s: %w", host, err)
	}
	f.log.Debug("schedules applied", "host_id", host, "version", r.Version, "skipped", len(r.Skipped))
	return nil
}

// checkFireTime is the console's distrust of an agent's clock and claims:
// a fire is for a time the schedule's cron produces, not in the future (with
// its jitter and a little skew), and not older than the last fire accepted
// from the schedule. With the store's one job per (schedule, time), an
// agent gets at most the runs its schedule has — a compromised endpoint
// cannot make a forget run again and again. It returns why not, or "".
func (f *Fleet) checkFireTime(host string, s schedules.Schedule, at, now time.Time) string {
	tick, spacing, err := schedules.IsTick(s.Cron, s.Timezone, at)
	switch {
	case err != nil:
		return err.Error()
	case !tick:
		return fmt.Sprintf("%s is not a time the schedule's cron %q produces", at.Format(time.RFC3339Nano), s.Cron)
	}
	if due := at.Add(schedules.Offset(host, s.ID, s.Jitter())); due.After(now.Add(maxSkew)) {
		return fmt.Sprintf("%s is in the future (due %s, the console's time %s)", at.Format(time.RFC3339), due.Format(time.RFC3339), now.UTC().Format(time.RFC3339))
	}
	last, ok, err := f.store.LatestFire(host, s.ID)
	switch {
	case err != nil:
		f.log.Warn("latest fire not read", "host_id", host, "schedule_id", s.ID, "error", err)
	case ok && at.Before(last):
		return fmt.Sprintf("%s is older than the schedule's last fire (%s)", at.Format(time.RFC3339), last.Format(time.RFC3339))
	case ok && spacing > 0 && at.After(last) && at.Sub(last) < spacing/2:
		return fmt.Sprintf("%s follows the last fire (%s) sooner than the schedule's interval %s allows", at.Format(time.RFC3339), last.Format(time.RFC3339), spacing)
	}
	return ""
}

// ingestFire turns a fire into at most one job. The console alone decides
// what runs: the schedule must belong to the sender and be enabled now; its
// arguments come from the console's records, never from the fire.
//
// A fire made under an older version than the current one is honoured when
// its schedule still exists and is enabled in the current version: an edit
// made while a fire was in flight must not lose that run. A fire for a
// schedule that was removed or disabled since is refused.
func (f *Fleet) ingestFire(host string, payload []byte) error {
	fr, err := wire.DecodeFire(payload)
	if err != nil {
		return err
	}
	refuse := func(why string) error {
		f.inst.Fire("refused")
		f.log.Warn("fire refused", "host_id", host, "schedule_id", fr.ScheduleID, "scheduled_at", fr.ScheduledAt, "reason", why)
		return fmt.Errorf("%w: fire refused: %s", broker.ErrRejected, why)
	}
	hs, err := f.store.GetSchedules(host)
	if err != nil {
		return err
	}
	var sched *schedules.Schedule
	for _, s := range hs.Effective() {
		if s.ID == fr.ScheduleID {
			sched = &s
		}
	}
	switch {
	case sched == nil:
		return refuse("no such schedule on this host")
	case !sched.Enabled:
		return refuse("schedule is disabled")
	case fr.ScheduleVersion > hs.Version:
		return refuse(fmt.Sprintf("version %d was never published (current %d)", fr.ScheduleVersion, hs.Version))
	}
	if why := f.checkFireTime(host, *sched, fr.ScheduledAt, time.Now()); why != "" {
		return refuse(why)
	}
	args, err := sched.JobArgsAt(fr.ScheduledAt) // the bandwidth limits in force at the scheduled time
	if err != nil {
		return refuse(err.Error())
	}
	j, created, err := f.newJob(JobRequest{
		HostID: host, RepoID: sched.RepoID, Kind: sched.Kind, Args: args,
		ActorKind: "schedule", Actor: sched.Name, ScheduleID: sched.ID,
		ScheduledAt: fr.ScheduledAt, CatchUp: fr.CatchUp,
	})
	if err != nil {
		if _, ok := input.As(err); ok {
			return refuse(err.Error())
		}
		return err
	}
	if !created {
		f.inst.Fire("duplicate")
		f.log.Debug("duplicate fire ignored", "host_id", host, "schedule_id", fr.ScheduleID, "job_id", j.ID)
		return nil
	}
	f.inst.Fire("accepted")
	return nil
}

// republishDesired resends a host's retained desired state (after it comes
// online: a publish that failed earlier is healed here).
func (f *Fleet) republishDesired(_ context.Context, hostID string) {
	hs, err := f.store.GetSchedules(hostID)
	if err != nil || hs.Version == 0 || hs.AppliedVersion == hs.Version {
		return
	}
	if err := f.publishDesired(hs); err != nil {
		f.log.Warn("republish desired schedules", "host_id", hostID, "error", err)
	}
}

// ApplyPolicySchedules recomputes the policy-made schedules of the given
// hosts in one pass (compute gives a host's set): the hosts whose set
// changed get a new version, stored a few hundred per transaction, and
// their desired state published by a few workers (more with an external
// broker, see ParallelPublisher). It returns how many
// changed. This is how a policy edit or a relabelling reaches thousands of
// agents without a store transaction and an HTTP request per host.
func (f *Fleet) ApplyPolicySchedules(ctx context.Context, hostIDs []string, compute func(storage.Host) []schedules.Schedule) (int, error) {
	now := time.Now().UTC()
	// Publishers start with the first durable batch (none when nothing
	// changed): each batch is published as soon as it is durable, while
	// the next is committed.
	work := make(chan storage.HostSchedules, 256)
	var wg sync.WaitGroup
	var startOnce sync.Once
	start := func() {
		for range f.publishWorkers() {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for hs := range work {
					if ctx.Err() != nil {
						continue // stored: published when the host next comes online
					}
					if err := f.publishDesired(hs); err != nil {
						// Stored: it is published again when the host next comes online.
						f.log.Warn("publish desired schedules", "host_id", hs.HostID, "version", hs.Version, "error", err)
					}
				}
			}()
		}
	}
	changed, err := f.store.UpdateSchedulesMany(hostIDs, func(hs *storage.HostSchedules, h storage.Host) (bool, error) {
		next := compute(h)
		if schedulesEqual(hs.Policy, next) {
			return false, nil
		}
		hs.Policy = next
		hs.Version++
		hs.UpdatedAt = now
		return true, nil
	}, func(batch []storage.HostSchedules) {
		startOnce.Do(start)
		for _, hs := range batch {
			work <- hs
		}
	})
	close(work)
	wg.Wait()
	if err != nil {
		return len(changed), err
	}
	return len(changed), ctx.Err()
}

func schedulesEqual(a, b []schedules.Schedule) bool {
	if len(a) != len(b) {
		return false
	}
	ja, _ := json.Marshal(a)
	jb, _ := json.Marshal(b)
	return string(ja) == string(jb)
}

// RepublishDesired publishes every host's desired schedules again, retained
// (a few workers; it returns when done or when ctx ends). The embedded
// broker keeps them in memory only (broker: persistHook), so the console
// sends them once it starts; an agent that subscribed meanwhile gets them
// then. It returns how many were published.
func (f *Fleet) RepublishDesired(ctx context.Context) (int, error) {
	work := make(chan storage.HostSchedules)
	var wg sync.WaitGroup
	var sent atomic.Int64
	for range f.publishWorkers() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for hs := range work {
				if err := f.publishDesired(hs); err != nil {
					f.log.Warn("republish desired schedules", "host_id", hs.HostID, "error", err)
					continue
				}
				sent.Add(1)
			}
		}()
	}
	err := f.store.EachSchedules(ctx, func(hs storage.HostSchedules) {
		if hs.Version > 0 {
			work <- hs
		}
	})
	close(work)
	wg.Wait()
	return int(sent.Load()), err
}
