package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// applyGrace is how long an online host may take to apply a new version
// before it is flagged.
const applyGrace = 3 * time.Minute

func (c *Console) apiPutSchedules(w http.ResponseWriter, r *http.Request) {
	hostID := chi.URLParam(r, "id")
	var in []schedules.Schedule
	if err := decode(r, &in); err != nil {
		c.fail(w, r, err)
		return
	}
	if in == nil {
		in = []schedules.Schedule{}
	}
	if _, err := c.store.GetHost(hostID); err != nil {
		c.fail(w, r, err)
		return
	}
	if err := schedules.ValidateSet(in); err != nil {
		c.fail(w, r, badRequest("%v", err))
		return
	}
	for _, s := range in {
		if _, err := c.store.GetRepo(s.RepoID); err != nil {
			c.fail(w, r, badRequest("schedule %q: repository %q does not exist", s.Name, s.RepoID))
			return
		}
	}
	hs, err := c.store.UpdateSchedules(hostID, func(hs *storage.HostSchedules) error {
		known := map[string]bool{}
		for _, s := range hs.Schedules {
			known[s.ID] = true
		}
		out := make([]schedules.Schedule, len(in))
		for i, s := range in {
			switch {
			case s.ID == "":
				s.ID = newID("sch")
			case !known[s.ID]:
				return badRequest("schedule %q: unknown id %q (omit the id to create a schedule)", s.Name, s.ID)
			}
			out[i] = s
		}
		hs.Schedules = out
		hs.Version++
		hs.UpdatedAt = time.Now().UTC()
		return nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.publishDesired(hs); err != nil {
		// Stored: it is published again when the host next comes online.
		c.log.Error("publish desired schedules", "host_id", hostID, "version", hs.Version, "error", err)
	}
	p, _ := principalFrom(r.Context())
	c.log.Debug("schedules changed", // audited; one per host in a rollout
		"host_id", hostID, "version", hs.Version, "count", len(hs.Schedules), "by", p.User)
	writeJSON(w, http.StatusOK, c.viewSchedules(hs, true))
}

func (c *Console) apiGetSchedules(w http.ResponseWriter, r *http.Request) {
	hostID := chi.URLParam(r, "id")
	h, err := c.store.GetHost(hostID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	hs, err := c.store.GetSchedules(hostID)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c.viewSchedules(hs, h.Online))
}

type scheduleView struct {
	schedules.Schedule
	NextRuns []time.Time `json:"next_runs"`
}

type schedulesView struct {
	Version        int64                     `json:"version"`
	AppliedVersion int64                     `json:"applied_version"`
	AppliedAt      *time.Time                `json:"applied_at"`
	Pending        bool                      `json:"pending"`
	Skipped        []storage.SkippedSchedule `json:"skipped"`
	Schedules      []scheduleView            `json:"schedules"`
}

func (c *Console) viewSchedules(hs storage.HostSchedules, online bool) schedulesView {
	v := schedulesView{Version: hs.Version, AppliedVersion: hs.AppliedVersion, Skipped: hs.Skipped,
		Pending: schedulePending(hs, online, time.Now()), Schedules: []scheduleView{}}
	if v.Skipped == nil {
		v.Skipped = []storage.SkippedSchedule{}
	}
	if !hs.AppliedAt.IsZero() {
		t := hs.AppliedAt
		v.AppliedAt = &t
	}
	now := time.Now()
	for _, s := range hs.Schedules {
		sv := scheduleView{Schedule: s, NextRuns: []time.Time{}}
		if s.Enabled {
			if runs, err := schedules.EntryNextRuns(hs.HostID, s.Entry(), now, 5); err == nil {
				sv.NextRuns = runs
			}
		}
		v.Schedules = append(v.Schedules, sv)
	}
	return v
}

// schedulePending flags an online host that has not applied the current
// version within applyGrace of the change.
func schedulePending(hs storage.HostSchedules, online bool, now time.Time) bool {
	return online && hs.AppliedVersion < hs.Version && now.Sub(hs.UpdatedAt) > applyGrace
}

// publishDesired sends the retained desired state: only what the agent
// needs to fire, no paths and no secrets.
func (c *Console) publishDesired(hs storage.HostSchedules) error {
	d := wire.SchedulesDesired{Version: hs.Version, Schedules: []wire.ScheduleEntry{}}
	for _, s := range hs.Schedules {
		d.Schedules = append(d.Schedules, s.Entry())
	}
	b, err := wire.Encode(&d)
	if err != nil {
		return err
	}
	return c.pub.Publish(wire.SchedulesDesiredTopic(hs.HostID), b, true, 0)
}

func (c *Console) ingestReported(host string, payload []byte) error {
	r, err := wire.DecodeSchedulesReported(payload)
	if err != nil {
		return err
	}
	_, err = c.store.UpdateSchedules(host, func(hs *storage.HostSchedules) error {
		if r.Version <= hs.AppliedVersion && hs.AppliedVersion != 0 {
			return errNoChange // stale or repeated report
		}
		if r.Version > hs.Version {
			c.log.Warn("host reports a schedule version the console never published", "host_id", host, "reported", r.Version, "desired", hs.Version)
			return errNoChange
		}
		hs.AppliedVersion, hs.AppliedAt = r.Version, r.AppliedAt
		hs.Skipped = nil
		for _, s := range r.Skipped {
			hs.Skipped = append(hs.Skipped, storage.SkippedSchedule{ID: s.ID, Reason: s.Reason})
		}
		return nil
	})
	if errors.Is(err, errNoChange) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("reported schedules of %s: %w", host, err)
	}
	c.log.Debug("schedules applied", "host_id", host, "version", r.Version, "skipped", len(r.Skipped))
	return nil
}

// ingestFire turns a fire into at most one job. The console alone decides
// what runs: the schedule must belong to the sender and be enabled now; its
// arguments come from the console's records, never from the fire.
//
// A fire made under an older version than the current one is honoured when
// its schedule still exists and is enabled in the current version: an edit
// made while a fire was in flight must not lose that run. A fire for a
// schedule that was removed or disabled since is refused.
func (c *Console) ingestFire(host string, payload []byte) error {
	f, err := wire.DecodeFire(payload)
	if err != nil {
		return err
	}
	refuse := func(why string) error {
		c.metrics.firesSeen.WithLabelValues("refused").Inc()
		c.log.Warn("fire refused", "host_id", host, "schedule_id", f.ScheduleID, "scheduled_at", f.ScheduledAt, "reason", why)
		return fmt.Errorf("%w: fire refused: %s", broker.ErrRejected, why)
	}
	hs, err := c.store.GetSchedules(host)
	if err != nil {
		return err
	}
	var sched *schedules.Schedule
	for i := range hs.Schedules {
		if hs.Schedules[i].ID == f.ScheduleID {
			sched = &hs.Schedules[i]
		}
	}
	switch {
	case sched == nil:
		return refuse("no such schedule on this host")
	case !sched.Enabled:
		return refuse("schedule is disabled")
	case f.ScheduleVersion > hs.Version:
		return refuse(fmt.Sprintf("version %d was never published (current %d)", f.ScheduleVersion, hs.Version))
	}
	args, err := scheduleArgs(*sched)
	if err != nil {
		return refuse(err.Error())
	}
	j, created, err := c.newJob(jobRequest{
		HostID: host, RepoID: sched.RepoID, Kind: sched.Kind, Args: args,
		ActorKind: "schedule", Actor: sched.Name, ScheduleID: sched.ID,
		ScheduledAt: f.ScheduledAt, CatchUp: f.CatchUp,
	})
	if err != nil {
		if errors.Is(err, errBadRequest) {
			return refuse(err.Error())
		}
		return err
	}
	if !created {
		c.metrics.firesSeen.WithLabelValues("duplicate").Inc()
		c.log.Debug("duplicate fire ignored", "host_id", host, "schedule_id", f.ScheduleID, "job_id", j.ID)
		return nil
	}
	c.metrics.firesSeen.WithLabelValues("accepted").Inc()
	return nil
}

// scheduleArgs builds a job's arguments from the schedule record.
func scheduleArgs(s schedules.Schedule) (json.RawMessage, error) {
	var v any
	switch s.Kind {
	case wire.JobBackup:
		v = wire.BackupArgs{Paths: s.Paths, Excludes: s.Excludes, Tags: s.Tags}
	case wire.JobForget:
		if s.Retention == nil {
			return nil, fmt.Errorf("forget schedule without retention")
		}
		v = wire.ForgetArgs{Retention: *s.Retention, Prune: s.Prune, Tags: s.Tags}
	case wire.JobPrune:
		v = wire.PruneArgs{MaxUnused: s.MaxUnused}
	case wire.JobCheck:
		v = wire.CheckArgs{ReadDataSubset: s.ReadDataSubset}
	default:
		return nil, fmt.Errorf("schedule kind %q", s.Kind)
	}
	return json.Marshal(v)
}

// republishDesired resends a host's retained desired state (after it comes
// online: a publish that failed earlier is healed here).
func (c *Console) republishDesired(_ context.Context, hostID string) {
	hs, err := c.store.GetSchedules(hostID)
	if err != nil || hs.Version == 0 || hs.AppliedVersion == hs.Version {
		return
	}
	if err := c.publishDesired(hs); err != nil {
		c.log.Warn("republish desired schedules", "host_id", hostID, "error", err)
	}
}
