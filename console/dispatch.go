package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// errBadRequest marks errors caused by the caller's input (HTTP 400).
var errBadRequest = errors.New("bad request")

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, a...))
}

// supportedKinds are the job kinds this console can build commands for.
var supportedKinds = map[string]bool{wire.JobInit: true, wire.JobBackup: true}

// validateArgs checks a job's arguments and returns them normalised.
func validateArgs(kind string, raw json.RawMessage) (json.RawMessage, error) {
	switch kind {
	case wire.JobInit:
		return nil, nil
	case wire.JobBackup:
		var a wire.BackupArgs
		if len(raw) > 0 && string(raw) != "null" {
			dec := json.NewDecoder(strings.NewReader(string(raw)))
			dec.DisallowUnknownFields()
			if err := dec.Decode(&a); err != nil {
				return nil, badRequest("backup args: %v", err)
			}
		}
		if len(a.Paths) == 0 {
			return nil, badRequest("backup args: at least one path is required")
		}
		for _, list := range [][]string{a.Paths, a.Excludes, a.Tags} {
			for _, s := range list {
				if err := checkArg(s); err != nil {
					return nil, err
				}
			}
		}
		b, _ := json.Marshal(a)
		return b, nil
	}
	if !supportedKinds[kind] {
		return nil, badRequest("job kind %q is not supported yet (supported: init, backup)", kind)
	}
	return raw, nil
}

// checkArg refuses values restic would read as options, and control bytes.
func checkArg(s string) error {
	if s == "" {
		return badRequest("empty value")
	}
	if strings.HasPrefix(s, "-") {
		return badRequest("%q starts with '-' and would be read as an option", s)
	}
	if strings.ContainsAny(s, "\x00\n\r") {
		return badRequest("%q contains control characters", s)
	}
	return nil
}

// jobRequest is a job to create, from a user or from a schedule's fire.
type jobRequest struct {
	HostID, RepoID, Kind string
	Args                 json.RawMessage
	ActorKind, Actor     string
	TimeoutS             int
	ScheduleID           string
	ScheduledAt          time.Time
	CatchUp              bool
}

// createJob validates, records and dispatches a user's job.
func (c *Console) createJob(hostID, repoID, kind string, args json.RawMessage, actorKind, actor string, timeoutS int) (storage.Job, error) {
	j, _, err := c.newJob(jobRequest{HostID: hostID, RepoID: repoID, Kind: kind, Args: args, ActorKind: actorKind, Actor: actor, TimeoutS: timeoutS})
	return j, err
}

// newJob validates, records and dispatches a job. A scheduled job is made
// once per (schedule, scheduled_at): created is false when it already was.
func (c *Console) newJob(req jobRequest) (storage.Job, bool, error) {
	h, err := c.store.GetHost(req.HostID)
	if err != nil {
		return storage.Job{}, false, err
	}
	if !h.Enrolled {
		return storage.Job{}, false, badRequest("host %s has not enrolled an agent yet", req.HostID)
	}
	if !supportedKinds[req.Kind] {
		return storage.Job{}, false, badRequest("job kind %q is not supported yet (supported: init, backup)", req.Kind)
	}
	if _, err := c.store.GetRepo(req.RepoID); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return storage.Job{}, false, badRequest("repository %q does not exist", req.RepoID)
		}
		return storage.Job{}, false, err
	}
	norm, err := validateArgs(req.Kind, req.Args)
	if err != nil {
		return storage.Job{}, false, err
	}
	if req.TimeoutS < 0 {
		return storage.Job{}, false, badRequest("timeout_s must not be negative")
	}
	now := time.Now().UTC()
	j := storage.Job{
		ID: newID("job"), HostID: req.HostID, RepoID: req.RepoID, Kind: req.Kind, Args: norm,
		ActorKind: req.ActorKind, Actor: req.Actor, Status: storage.JobQueued,
		CreatedAt: now, ExpiresAt: now.Add(c.opts.CommandExpiry), TimeoutS: req.TimeoutS,
		ScheduleID: req.ScheduleID, ScheduledAt: req.ScheduledAt, CatchUp: req.CatchUp,
	}
	created := true
	if req.ScheduleID != "" {
		j, created, err = c.store.CreateScheduledJob(j, req.ScheduledAt)
	} else {
		err = c.store.CreateJob(j)
	}
	if err != nil {
		return storage.Job{}, false, err
	}
	if !created {
		return j, false, nil
	}
	if req.ActorKind == "schedule" {
		c.record(storage.AuditEntry{Actor: "schedule:" + req.ScheduleID, Kind: "schedule", Action: "job " + req.Kind, Target: j.ID,
			Detail: "scheduled_at " + req.ScheduledAt.Format(time.RFC3339)})
	}
	if err := c.dispatch(j, h); err != nil {
		// The job stays queued: it is sent again when the agent comes online.
		c.log.Error("dispatch failed; job stays queued", "job_id", j.ID, "error", err)
	}
	c.log.Info("job queued", "job_id", j.ID, "host_id", req.HostID, "kind", req.Kind, "actor_kind", req.ActorKind, "actor", req.Actor, "schedule_id", req.ScheduleID)
	return j, true, nil
}

// dispatch seals the repository to the host's key and publishes the command.
func (c *Console) dispatch(j storage.Job, h storage.Host) error {
	sec, err := c.store.RepoSecrets(j.RepoID)
	if err != nil {
		return err
	}
	plain, err := json.Marshal(wire.RepoSpec{URL: sec.URL, Password: sec.Password, Env: sec.Env})
	if err != nil {
		return err
	}
	sealed, err := seal.Seal(h.PublicKey, plain)
	if err != nil {
		return fmt.Errorf("seal for %s: %w", h.ID, err)
	}
	b, err := wire.Encode(&wire.Command{
		JobID: j.ID, Kind: j.Kind, Args: j.Args, TimeoutS: j.TimeoutS,
		IssuedAt: j.CreatedAt, ExpiresAt: j.ExpiresAt, SealedRepo: sealed,
	})
	if err != nil {
		return err
	}
	expiry := time.Until(j.ExpiresAt)
	if expiry <= 0 {
		return fmt.Errorf("job %s expired before dispatch", j.ID)
	}
	return c.pub.Publish(wire.CommandsTopic(h.ID), b, false, expiry)
}

// redispatch re-sends a host's queued jobs, oldest first, and expires those
// past their deadline.
func (c *Console) redispatch(ctx context.Context, hostID string) {
	h, err := c.store.GetHost(hostID)
	if err != nil {
		return
	}
	var queued []storage.Job
	cursor := ""
	for ctx.Err() == nil {
		page, next, err := c.store.ListJobs(storage.JobQuery{HostID: hostID, Status: storage.JobQueued, Limit: 200, Cursor: cursor})
		if err != nil {
			c.log.Error("redispatch: list jobs", "host_id", hostID, "error", err)
			return
		}
		queued = append(queued, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	now := time.Now()
	for i := len(queued) - 1; i >= 0; i-- {
		j := queued[i]
		if !j.ExpiresAt.IsZero() && now.After(j.ExpiresAt) {
			c.expire(j.ID)
			continue
		}
		if err := c.dispatch(j, h); err != nil {
			c.log.Warn("redispatch failed", "job_id", j.ID, "error", err)
		}
	}
}

func (c *Console) expire(jobID string) {
	j, err := c.store.UpdateJob(jobID, func(j *storage.Job) error {
		if j.Status != storage.JobQueued {
			return errNoChange
		}
		j.Status = storage.JobExpired
		j.EndedAt = time.Now().UTC()
		j.Error = "the agent did not pick the command up before it expired"
		return nil
	})
	if err == nil {
		c.events.publish(j)
		c.log.Warn("job expired", "job_id", jobID, "host_id", j.HostID)
	}
}

var errNoChange = errors.New("no change")

// sweepLoop expires queued jobs whose agent never came back in time. Only
// jobs young enough to be still queued are walked: the index is newest first.
func (c *Console) sweepLoop(ctx context.Context) {
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		horizon := time.Now().Add(-c.opts.CommandExpiry - time.Hour)
		cursor := ""
		for ctx.Err() == nil {
			page, next, err := c.store.ListJobs(storage.JobQuery{Limit: 200, Cursor: cursor})
			if err != nil {
				break
			}
			stop := false
			for _, j := range page {
				if j.CreatedAt.Before(horizon) {
					stop = true
					break
				}
				if j.Status == storage.JobQueued && !j.ExpiresAt.IsZero() && time.Now().After(j.ExpiresAt) {
					c.expire(j.ID)
				}
			}
			if stop || next == "" {
				break
			}
			cursor = next
		}
	}
}
