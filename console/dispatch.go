package console

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// errBadRequest marks errors caused by the caller's input (HTTP 400).
var errBadRequest = errors.New("bad request")

func badRequest(format string, a ...any) error {
	return fmt.Errorf("%w: %s", errBadRequest, fmt.Sprintf(format, a...))
}

// supportedKinds are the job kinds operators can run through the API.
var supportedKinds = map[string]bool{
	wire.JobInit: true, wire.JobBackup: true, wire.JobForget: true, wire.JobPrune: true, wire.JobCheck: true,
	wire.JobUnlock: true, wire.JobSnapshots: true, wire.JobStats: true, wire.JobDiff: true, wire.JobRestore: true,
	wire.JobLs: true, wire.JobLocks: true, wire.JobHealth: true, wire.JobIndex: true,
}

// destructive reports whether a job can delete data: forget, prune and
// unlock --remove-all.
func destructive(j storage.Job) bool {
	switch j.Kind {
	case wire.JobForget, wire.JobPrune:
		return true
	case wire.JobUnlock:
		var a wire.UnlockArgs
		return json.Unmarshal(j.Args, &a) == nil && a.RemoveAll
	}
	return false
}

// exclusiveKinds need the repository to themselves (restic takes an
// exclusive lock for them).
var exclusiveKinds = map[string]bool{wire.JobCheck: true, wire.JobForget: true, wire.JobPrune: true}

// strictDecode reads job arguments, refusing unknown fields.
func strictDecode(kind string, raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("%s args: %v", kind, err)
	}
	return nil
}

// validateArgs checks a job's arguments and returns them normalised. The
// agent's runner checks again; this gives the operator the error at once.
func validateArgs(kind string, raw json.RawMessage) (json.RawMessage, error) {
	var v any
	var err error
	switch kind {
	case wire.JobInit, wire.JobLocks, wire.JobHealth:
		return nil, nil
	case wire.JobBackup:
		var a wire.BackupArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			err = checkBackup(a)
		}
		v = a
	case wire.JobForget:
		var a wire.ForgetArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			err = checkForget(a)
		}
		v = a
	case wire.JobPrune:
		var a wire.PruneArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			if e := schedules.ValidateMaxUnused(a.MaxUnused); e != nil {
				err = badRequest("%v", e)
			}
		}
		v = a
	case wire.JobCheck:
		var a wire.CheckArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			if e := schedules.ValidateSubset(a.ReadDataSubset); e != nil {
				err = badRequest("%v", e)
			}
		}
		v = a
	case wire.JobUnlock:
		var a wire.UnlockArgs
		err = strictDecode(kind, raw, &a)
		v = a
	case wire.JobSnapshots:
		var a wire.SnapshotsArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			err = checkArgs(a.Hosts, a.Tags, a.Paths)
		}
		v = a
	case wire.JobStats:
		var a wire.StatsArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			if a.Mode != "" && a.Mode != "restore-size" && a.Mode != "raw-data" {
				err = badRequest("stats mode must be restore-size or raw-data")
			}
			for _, id := range a.SnapshotIDs {
				if err == nil && !validSnapshotRef(id) {
					err = badRequest("snapshot id %q is not 8-64 hex characters or \"latest\"", id)
				}
			}
		}
		v = a
	case wire.JobDiff:
		var a wire.DiffArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			if !validSnapshotRef(a.SnapshotA) || !validSnapshotRef(a.SnapshotB) || a.SnapshotA == "latest" || a.SnapshotB == "latest" {
				err = badRequest("diff needs snapshot_a and snapshot_b as 8-64 hex characters")
			}
		}
		v = a
	case wire.JobRestore:
		var a wire.RestoreArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			err = checkRestore(a)
		}
		v = a
	case wire.JobIndex:
		var a wire.IndexArgs
		if err = strictDecode(kind, raw, &a); err == nil && (len(a.SnapshotID) != 64 || !validSnapshotRef(a.SnapshotID)) {
			err = badRequest("index needs the full 64-hex snapshot_id")
		}
		v = a
	case wire.JobLs:
		var a wire.LsArgs
		if err = strictDecode(kind, raw, &a); err == nil {
			if !validSnapshotRef(a.SnapshotID) {
				err = badRequest("ls needs a snapshot_id")
			} else if a.Path != "" {
				err = checkTreePath(a.Path)
			}
		}
		v = a
	default:
		return nil, badRequest("job kind %q is not one of init, backup, forget, prune, check, unlock, snapshots, stats, diff, restore, ls, locks", kind)
	}
	if err != nil {
		return nil, err
	}
	b, _ := json.Marshal(v)
	return b, nil
}

func checkBackup(a wire.BackupArgs) error {
	if len(a.Paths) == 0 {
		return badRequest("backup args: at least one path is required")
	}
	return checkArgs(a.Paths, a.Excludes, a.Tags, a.ExcludeFiles)
}

func checkForget(a wire.ForgetArgs) error {
	if err := schedules.ValidateRetention(a.Retention); err != nil {
		return badRequest("%v", err)
	}
	return checkArgs(a.Tags, a.Hosts)
}

func checkRestore(a wire.RestoreArgs) error {
	if !validSnapshotRef(a.SnapshotID) {
		return badRequest("restore needs a snapshot_id (8-64 hex characters or \"latest\")")
	}
	if a.InPlace == (a.TargetPath != "") {
		return badRequest("restore needs exactly one of target_path and in_place")
	}
	if a.TargetPath != "" {
		if err := checkTarget(a.TargetPath); err != nil {
			return err
		}
	}
	for _, p := range a.Include {
		if err := checkTreePath(p); err != nil {
			return err
		}
	}
	switch a.Overwrite {
	case "", "always", "if-changed", "if-newer", "never":
	default:
		return badRequest("overwrite must be always, if-changed, if-newer or never")
	}
	return nil
}

// checkTarget refuses restore targets that are relative, option-like or
// climb out of themselves.
func checkTarget(p string) error {
	if err := checkArg(p); err != nil {
		return err
	}
	if !isAbs(p) {
		return badRequest("target_path %q must be absolute", p)
	}
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return badRequest("target_path %q must not contain '..'", p)
		}
	}
	return nil
}

// checkTreePath checks a path inside a snapshot ("/home/x", "/C/Users/x").
func checkTreePath(p string) error {
	if err := checkArg(p); err != nil {
		return err
	}
	if !strings.HasPrefix(p, "/") {
		return badRequest("%q must be an absolute path inside the snapshot", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return badRequest("%q must not contain '..'", p)
		}
	}
	return nil
}

// isAbs accepts Unix paths and Windows drive or UNC paths (the target is a
// path on the agent's machine, whatever the console runs on).
func isAbs(p string) bool {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\\`) {
		return true
	}
	return len(p) >= 3 && (p[1] == ':') && (p[2] == '\\' || p[2] == '/') && (p[0]|0x20 >= 'a' && p[0]|0x20 <= 'z')
}

func validSnapshotRef(s string) bool {
	if s == "latest" {
		return true
	}
	if len(s) < 8 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

func checkArgs(lists ...[]string) error {
	for _, list := range lists {
		for _, s := range list {
			if err := checkArg(s); err != nil {
				return err
			}
		}
	}
	return nil
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
		return storage.Job{}, false, badRequest("job kind %q is not one of init, backup, forget, prune, check, unlock, snapshots, stats, diff, restore, ls, locks", req.Kind)
	}
	rp, err := c.store.GetRepo(req.RepoID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return storage.Job{}, false, badRequest("repository %q does not exist", req.RepoID)
		}
		return storage.Job{}, false, err
	}
	norm, err := validateArgs(req.Kind, req.Args)
	if err != nil {
		return storage.Job{}, false, err
	}
	// Deleting operations run only on the maintenance host, with its
	// credentials: an endpoint holds append-only ones and never sees those.
	if rp.MaintenanceHostID != "" && destructive(storage.Job{Kind: req.Kind, Args: norm}) && req.HostID != rp.MaintenanceHostID {
		c.log.Info("destructive job routed to the maintenance host", "kind", req.Kind, "requested_host", req.HostID, "maintenance_host", rp.MaintenanceHostID)
		req.HostID = rp.MaintenanceHostID
		if h, err = c.store.GetHost(req.HostID); err != nil {
			return storage.Job{}, false, err
		}
		if !h.Enrolled {
			return storage.Job{}, false, badRequest("maintenance host %s has not enrolled an agent yet", h.ID)
		}
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
	dispatchNow := c.admit(&j)
	created := true
	if req.ScheduleID != "" {
		var audit []storage.AuditEntry
		if req.ActorKind == "schedule" {
			audit = append(audit, storage.AuditEntry{At: now, Actor: "schedule:" + req.ScheduleID, Kind: "schedule", Action: "job " + req.Kind, Target: j.ID,
				Detail: "scheduled_at " + req.ScheduledAt.Format(time.RFC3339)})
		}
		j, created, err = c.store.CreateScheduledJob(j, req.ScheduledAt, audit...)
	} else {
		err = c.store.CreateJob(j)
	}
	if err != nil || !created {
		if dispatchNow {
			c.gate.leave(j.RepoID, j.ID)
		}
		if err != nil {
			return storage.Job{}, false, err
		}
		return j, false, nil
	}
	if !dispatchNow {
		c.hold(j)
		return j, true, nil
	}
	if err := c.dispatch(j, h); err != nil {
		// The job stays queued: it is sent again when the agent comes online.
		c.log.Error("dispatch failed; job stays queued", "job_id", j.ID, "error", err)
	}
	// Per job: at fleet scale a fire storm is one line per host. The job
	// record and (for schedules) the audit log keep the same facts.
	c.log.Debug("job queued", "job_id", j.ID, "host_id", req.HostID, "kind", req.Kind, "actor_kind", req.ActorKind, "actor", req.Actor, "schedule_id", req.ScheduleID)
	return j, true, nil
}

// dispatch seals the repository to the host's key and publishes the command.
func (c *Console) dispatch(j storage.Job, h storage.Host) error {
	sec, err := c.store.RepoSecrets(j.RepoID)
	if err != nil {
		return err
	}
	rp, err := c.store.GetRepo(j.RepoID)
	if err != nil {
		return err
	}
	switch {
	case rp.MaintenanceHostID != "" && h.ID == rp.MaintenanceHostID && sec.Maintenance != nil:
		sec = *sec.Maintenance
	case rp.MaintenanceHostID != "" && destructive(j):
		// newJob routes these to the maintenance host; never send them
		// anywhere else, whatever went wrong before.
		return fmt.Errorf("job %s (%s) may only run on the maintenance host %s", j.ID, j.Kind, rp.MaintenanceHostID)
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
		if j.Held {
			continue // the repository gate sends it when its turn comes
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
		c.goBG(func(context.Context) { c.jobEnded(j) })
	}
}

var errNoChange = errors.New("no change")

// eachOpenJob calls fn for every job young enough to be still open (created
// within the command expiry, plus an hour), newest first: the job index is
// time ordered, so the walk stops at the first older job.
func (c *Console) eachOpenJob(ctx context.Context, fn func(storage.Job)) error {
	horizon := time.Now().Add(-c.opts.CommandExpiry - time.Hour)
	cursor := ""
	for ctx.Err() == nil {
		page, next, err := c.store.ListJobs(storage.JobQuery{Limit: 500, Cursor: cursor})
		if err != nil {
			return err
		}
		for _, j := range page {
			if j.CreatedAt.Before(horizon) {
				return nil
			}
			fn(j)
		}
		if next == "" {
			return nil
		}
		cursor = next
	}
	return ctx.Err()
}

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
		c.refreshStaleHealth(ctx)
		err := c.eachOpenJob(ctx, func(j storage.Job) {
			if j.Status == storage.JobQueued && !j.ExpiresAt.IsZero() && time.Now().After(j.ExpiresAt) {
				c.expire(j.ID)
			}
		})
		if err != nil {
			c.log.Warn("expiry sweep", "error", err)
		}
	}
}
