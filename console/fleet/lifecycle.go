package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/hooks"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// The job lifecycle (doc.go draws it): every change of a job's status is
// in this file or in ingest.go, and every end goes through ended.

// JobRequest is a job to create, from a person, a schedule's fire or the
// console itself (ActorKind "system").
type JobRequest struct {
	HostID, RepoID, Kind string
	Args                 json.RawMessage
	ActorKind, Actor     string
	TimeoutS             int
	ScheduleID           string
	ScheduledAt          time.Time
	CatchUp              bool
	// console: a kind only the console starts (CreateConsoleJob).
	console bool
}

// CreateJob validates, records and dispatches a job asked for by a person
// or a script.
func (f *Fleet) CreateJob(req JobRequest) (storage.Job, error) {
	j, _, err := f.newJob(req)
	return j, err
}

// newJob validates, records and dispatches a job. A scheduled job is made
// once per (schedule, scheduled_at): created is false when it already was.
func (f *Fleet) newJob(req JobRequest) (storage.Job, bool, error) {
	h, err := f.store.GetHost(req.HostID)
	if err != nil {
		return storage.Job{}, false, err
	}
	if !h.Enrolled {
		return storage.Job{}, false, Invalid("host %s has not enrolled an agent yet", req.HostID)
	}
	firedBy := req.HostID // before a destructive job is routed elsewhere
	kind, ok := wire.LookupKind(req.Kind)
	if !ok || !kind.Operator && !req.console {
		return storage.Job{}, false, Invalid("job kind %q is not one of %s", req.Kind,
			strings.Join(wire.KindNames(func(k wire.KindInfo) bool { return k.Operator }), ", "))
	}
	rp, err := f.store.GetRepo(req.RepoID)
	if err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return storage.Job{}, false, Invalid("repository %q does not exist", req.RepoID)
		}
		return storage.Job{}, false, err
	}
	norm, err := wire.NormalizeArgs(req.Kind, req.Args)
	if err != nil {
		return storage.Job{}, false, argsInput(err)
	}
	if p := f.prep.Load(); p != nil { // a drill: the host it proves, where it runs (SetJobPrep)
		if norm, err = (*p)(&req, &h, norm); err != nil {
			return storage.Job{}, false, err
		}
	}
	// Deleting operations run only on the maintenance host, with its
	// credentials: an endpoint holds append-only ones and never sees those.
	if rp.MaintenanceHostID != "" && wire.Destructive(req.Kind, norm) && req.HostID != rp.MaintenanceHostID {
		f.log.Info("destructive job routed to the maintenance host", "kind", req.Kind, "requested_host", req.HostID, "maintenance_host", rp.MaintenanceHostID)
		// A forget asked for one host applies to that host's snapshots
		// only, not to every host's in the repository.
		if norm, err = forgetFor(req.Kind, norm, h); err != nil {
			return storage.Job{}, false, err
		}
		req.HostID = rp.MaintenanceHostID
		if h, err = f.store.GetHost(req.HostID); err != nil {
			return storage.Job{}, false, err
		}
		if !h.Enrolled {
			return storage.Job{}, false, Invalid("maintenance host %s has not enrolled an agent yet", h.ID)
		}
	}
	if err := f.bound(rp, h, req.Kind, norm); err != nil {
		return storage.Job{}, false, err
	}
	if req.Kind == wire.JobCopy { // the destination too (copy.go)
		if norm, err = f.prepCopy(rp, h, norm); err != nil {
			return storage.Job{}, false, err
		}
	} else if _, err := f.sealDest(h, req.Kind, norm, false); err != nil {
		return storage.Job{}, false, err // an init's chunker source the host may not read
	}
	if req.TimeoutS < 0 {
		return storage.Job{}, false, Invalid("timeout_s must not be negative")
	}
	refused := hooks.Check(h, req.Kind, norm) // a name h never reported: a fire makes a failed job (console/hooks: why)
	if refused != nil && req.ScheduleID == "" {
		return storage.Job{}, false, refused
	}
	now := time.Now().UTC()
	j := storage.Job{
		ID: token.NewID("job"), HostID: req.HostID, RepoID: req.RepoID, Kind: req.Kind, Args: norm,
		ActorKind: req.ActorKind, Actor: req.Actor, Status: storage.JobQueued,
		CreatedAt: now, ExpiresAt: now.Add(f.opts.CommandExpiry), TimeoutS: req.TimeoutS,
		ScheduleID: req.ScheduleID, ScheduledAt: req.ScheduledAt, CatchUp: req.CatchUp,
	}
	if req.ScheduleID != "" && firedBy != req.HostID {
		j.FiredBy = firedBy
	}
	if refused != nil {
		j.Status, j.EndedAt, j.Error, j.EndedByConsole = storage.JobFailed, now, refused.Error(), true
	}
	dispatchNow := refused == nil && f.gate.admit(&j)
	created := true
	// (Stored below; a held job then waits in the gate, the rest go out.)
	if req.ScheduleID != "" {
		var audit []storage.AuditEntry
		if req.ActorKind == "schedule" {
			audit = append(audit, storage.AuditEntry{At: now, Actor: "schedule:" + req.ScheduleID, Kind: "schedule", Action: "job " + req.Kind, Target: j.ID,
				Detail: "scheduled_at " + req.ScheduledAt.Format(time.RFC3339)})
		}
		j, created, err = f.store.CreateScheduledJob(j, req.ScheduledAt, audit...)
	} else {
		err = f.store.CreateJob(j)
	}
	if err != nil || !created {
		if dispatchNow {
			f.gate.leave(j)
		}
		if err != nil {
			return storage.Job{}, false, err
		}
		return j, false, nil
	}
	if refused != nil {
		f.ended(j)
	} else if !dispatchNow {
		f.gate.hold(j)
	}
	if !dispatchNow {
		return j, true, nil
	}
	if err := f.dispatch(j, h); err != nil {
		// The job stays queued: it is sent again when the agent comes online.
		f.log.Error("dispatch failed; job stays queued", "job_id", j.ID, "error", err)
	}
	// Per job: at fleet scale a fire storm is one line per host. The job
	// record and (for schedules) the audit log keep the same facts.
	f.log.Debug("job queued", "job_id", j.ID, "host_id", req.HostID, "kind", req.Kind, "actor_kind", req.ActorKind, "actor", req.Actor, "schedule_id", req.ScheduleID)
	return j, true, nil
}

// dispatch seals the repository to the host's key and publishes the command.
func (f *Fleet) dispatch(j storage.Job, h storage.Host) error {
	sec, err := f.store.RepoSecrets(j.RepoID)
	if err != nil {
		return err
	}
	main := sec
	rp, err := f.store.GetRepo(j.RepoID)
	if err != nil {
		return err
	}
	// Where the secrets leave: whatever happened since the job was made
	// (the host taken off the repository's list), only a bound host
	// receives them.
	if err := f.bound(rp, h, j.Kind, j.Args); err != nil {
		return fmt.Errorf("job %s not sent: %w", j.ID, err)
	}
	switch {
	case rp.MaintenanceHostID != "" && h.ID == rp.MaintenanceHostID && sec.Maintenance != nil:
		sec = *sec.Maintenance
	case rp.MaintenanceHostID != "" && wire.Destructive(j.Kind, j.Args):
		// newJob routes these to the maintenance host; never send them
		// anywhere else, whatever went wrong before.
		return fmt.Errorf("job %s (%s) may only run on the maintenance host %s", j.ID, j.Kind, rp.MaintenanceHostID)
	}
	second := ""
	if j.Kind == wire.JobRotateKey { // the old password to the new one (rotate.go)
		if sec, second, err = sealRotation(h, main, sec); err != nil {
			return fmt.Errorf("job %s not sent: %w", j.ID, err)
		}
	}
	plain, err := json.Marshal(wire.RepoSpec{URL: sec.URL, Password: sec.Password, Env: sec.Env})
	if err != nil {
		return err
	}
	sealed, err := seal.Seal(h.PublicKey, plain)
	if err != nil {
		return fmt.Errorf("seal for %s: %w", h.ID, err)
	}
	if second == "" {
		second, err = f.sealDest(h, j.Kind, j.Args, true) // a copy's destination, an init's chunker source (copy.go)
		if err != nil {
			return fmt.Errorf("job %s not sent: %w", j.ID, err)
		}
	}
	cmd := wire.Command{
		JobID: j.ID, Kind: j.Kind, Args: j.Args, TimeoutS: j.TimeoutS,
		IssuedAt: j.CreatedAt, ExpiresAt: j.ExpiresAt, SealedRepo: sealed,
	}
	if j.Kind == wire.JobInit {
		cmd.SealedFromRepo = second
	} else {
		cmd.SealedToRepo = second
	}
	if j.Kind == wire.JobForget {
		// Every forget is previewed and held rather than deleting more than
		// the guard allows or keeping snapshots dated in the future — until
		// an admin approved it.
		if j.ApprovedBy != "" {
			cmd.Approved = true
		} else {
			cmd.Guard = &wire.ForgetGuard{MaxRemovePercent: f.guardPercent(j), NotAfter: time.Now().UTC().Add(maxSkew)}
		}
	}
	b, err := wire.Encode(&cmd)
	if err != nil {
		return err
	}
	expiry := time.Until(j.ExpiresAt)
	if expiry <= 0 {
		return fmt.Errorf("job %s expired before dispatch", j.ID)
	}
	return f.pub.Publish(wire.CommandsTopic(h.ID), b, false, expiry)
}

// CancelJob stops a job: a queued one ends cancelled at once (and the agent
// is told to drop it if it arrives); a running one is interrupted by the
// agent, which removes restic's lock and reports "cancelled" — or, when its
// host is offline, ends cancelled at once (a result the agent sends when it
// is back replaces that end). It returns the job as it is now.
func (f *Fleet) CancelJob(id, by string) (storage.Job, error) {
	j, err := f.store.GetJob(id)
	if err != nil {
		return j, err
	}
	switch {
	case j.Status == storage.JobQueued:
		j, err = f.endByConsole(id, storage.JobCancelled, "cancelled by "+by+" before it started", storage.JobQueued)
	case j.Status == storage.JobRunning:
		if h, herr := f.store.GetHost(j.HostID); herr != nil || !h.Online {
			j, err = f.endByConsole(id, storage.JobCancelled, "cancelled by "+by+" while its host was offline", storage.JobRunning)
		}
	case j.Status == storage.JobHeld:
		j, err = f.endByConsole(id, storage.JobCancelled, "held forget cancelled by "+by+": nothing was deleted", storage.JobHeld)
	}
	if errors.Is(err, errNoChange) {
		j, err = f.store.GetJob(id)
	}
	if err != nil {
		return j, err
	}
	// A job the console ended may still reach its agent, or be held by it.
	if !storage.TerminalStatus(j.Status) || j.EndedByConsole {
		b, err := wire.Encode(&wire.Command{JobID: j.ID, Kind: wire.JobCancel, IssuedAt: time.Now().UTC()})
		if err == nil {
			err = f.pub.Publish(wire.CommandsTopic(j.HostID), b, false, f.opts.CommandExpiry)
		}
		if err != nil {
			f.log.Error("cancel not sent", "job_id", j.ID, "error", err)
		}
	}
	f.log.Info("job cancel requested", "job_id", j.ID, "status", j.Status, "by", by)
	return j, nil
}

// ApproveJob lets a forget its guard held run, unguarded: an admin looked
// at what it would remove. The job is queued again and goes through the
// gate like a new one.
func (f *Fleet) ApproveJob(id, by string) (storage.Job, error) {
	now := time.Now().UTC()
	j, err := f.store.UpdateJob(id, func(j *storage.Job) error {
		if j.Status != storage.JobHeld {
			return input.Conflictf("job %s is %s: only a held job can be approved", id, j.Status)
		}
		j.Status, j.ApprovedBy = storage.JobQueued, by
		j.EndedAt, j.ExitCode, j.Progress, j.Error, j.StderrTail = time.Time{}, nil, nil, "", ""
		j.ExpiresAt = now.Add(f.opts.CommandExpiry)
		j.Held = false
		return nil
	})
	if err != nil {
		return j, err
	}
	f.log.Warn("held forget approved", "job_id", j.ID, "host_id", j.HostID, "by", by)
	f.approved(j)
	if !f.gate.admit(&j) {
		if _, err := f.store.UpdateJob(j.ID, func(s *storage.Job) error { s.Held, s.Waited = true, true; return nil }); err != nil {
			return j, err
		}
		f.gate.hold(j)
		return j, nil
	}
	h, err := f.store.GetHost(j.HostID)
	if err == nil {
		err = f.dispatch(j, h)
	}
	if err != nil {
		f.log.Error("dispatch of an approved job failed; it stays queued", "job_id", j.ID, "error", err)
	}
	return j, nil
}

// forgetFor narrows a forget asked for host h to h's snapshots (restic's
// --host, by the host name its agent reports), unless it names hosts.
func forgetFor(kind string, args []byte, h storage.Host) ([]byte, error) {
	if kind != wire.JobForget {
		return args, nil
	}
	var a wire.ForgetArgs
	if err := json.Unmarshal(args, &a); err != nil {
		return nil, err
	}
	if len(a.Hosts) > 0 {
		return args, nil
	}
	if h.Hostname == "" {
		return nil, Invalid("host %s has not reported its host name yet: a forget for it cannot be narrowed to its snapshots; give args.hosts", h.ID)
	}
	a.Hosts = []string{h.Hostname}
	return json.Marshal(a)
}

// expire ends a queued job whose command was not picked up in time.
func (f *Fleet) expire(jobID string) {
	j, err := f.endByConsole(jobID, storage.JobExpired, "the agent did not pick the command up before it expired", storage.JobQueued)
	if err == nil {
		f.log.Warn("job expired", "job_id", jobID, "host_id", j.HostID)
	}
}

// endByConsole ends a job without its agent's word, if it is still in one
// of the given statuses (errNoChange otherwise), and runs the end of a job.
func (f *Fleet) endByConsole(jobID, status, why string, from ...string) (storage.Job, error) {
	j, err := f.store.UpdateJob(jobID, func(j *storage.Job) error {
		if !slices.Contains(from, j.Status) {
			return errNoChange
		}
		j.Status, j.EndedAt, j.Error, j.EndedByConsole = status, time.Now().UTC(), why, true
		j.Held = false
		return nil
	})
	if err != nil {
		return j, err
	}
	f.ended(j)
	return j, nil
}

// EndHostJobs ends every open job of a host that is deleted or revoked.
func (f *Fleet) EndHostJobs(ctx context.Context, hostID, why string) { f.endHostJobs(ctx, hostID, why) }

// endHostJobs ends every open job of a host that is gone or revoked: its
// queued jobs will never run, its running ones will never report.
func (f *Fleet) endHostJobs(ctx context.Context, hostID, why string) {
	for _, status := range []string{storage.JobQueued, storage.JobRunning, storage.JobHeld} {
		err := f.eachJob(ctx, storage.JobQuery{HostID: hostID, Status: status}, func(j storage.Job) bool {
			end := storage.JobFailed
			if j.Status != storage.JobRunning {
				end = storage.JobCancelled
			}
			if _, err := f.endByConsole(j.ID, end, why, storage.JobQueued, storage.JobRunning, storage.JobHeld); err != nil && !errors.Is(err, errNoChange) {
				f.log.Error("open job of a removed host not ended", "job_id", j.ID, "error", err)
			}
			return true
		})
		if err != nil {
			f.log.Error("open jobs of a removed host not ended", "host_id", hostID, "error", err)
		}
	}
}

// Observers of a job's life: each list runs in the background, in
// registration order, after the change is stored and sent to watchers.
type observers struct {
	mu                    sync.RWMutex
	ended, held, approved []func(storage.Job)
	hosts                 []func(storage.Host)
}

// OnHostChanged registers fn to run after a host is created, enrolled or
// changed (its labels: the policies that match it may change).
func (f *Fleet) OnHostChanged(fn func(storage.Host)) {
	f.obs.mu.Lock()
	defer f.obs.mu.Unlock()
	f.obs.hosts = append(f.obs.hosts, fn)
}

// HostChanged tells the host observers that h was made or changed.
func (f *Fleet) HostChanged(h storage.Host) { f.hostChanged(h) }

// hostChanged runs the host observers, synchronously: a caller that
// changed a host's labels sees its schedules follow when it returns.
func (f *Fleet) hostChanged(h storage.Host) {
	f.obs.mu.RLock()
	obs := f.obs.hosts
	f.obs.mu.RUnlock()
	for _, fn := range obs {
		fn(h)
	}
}

func (o *observers) add(list *[]func(storage.Job), fn func(storage.Job)) {
	o.mu.Lock()
	defer o.mu.Unlock()
	*list = append(*list, fn)
}

// OnJobEnd registers fn to run once for every job that ends (succeeded,
// partial, failed, cancelled or expired). The fleet's gate and repository
// health register first; the console adds metrics and alerts.
func (f *Fleet) OnJobEnd(fn func(storage.Job)) { f.obs.add(&f.obs.ended, fn) }

// OnJobHeld registers fn to run when a guarded forget is held.
func (f *Fleet) OnJobHeld(fn func(storage.Job)) { f.obs.add(&f.obs.held, fn) }

// OnJobApproved registers fn to run when an admin approves a held forget.
func (f *Fleet) OnJobApproved(fn func(storage.Job)) { f.obs.add(&f.obs.approved, fn) }

// notify sends j to watchers at once, then runs first (if any) and the
// observers of list in the background.
func (f *Fleet) notify(j storage.Job, list *[]func(storage.Job), first func(storage.Job)) {
	f.events.publish(j)
	f.obs.mu.RLock()
	obs := *list
	f.obs.mu.RUnlock()
	f.goBG(func(context.Context) {
		if first != nil {
			first(j)
		}
		for _, fn := range obs {
			fn(j)
		}
	})
}

// ended is the one end of every job, whoever ended it.
func (f *Fleet) ended(j storage.Job) {
	f.progress.Drop(j.ID)
	f.notify(j, &f.obs.ended, nil)
}

// held runs when a guarded forget stopped: its agent is done with it, so
// its repository is free (the gate's end of it); the job waits for an admin.
func (f *Fleet) held(j storage.Job) {
	f.progress.Drop(j.ID)
	f.notify(j, &f.obs.held, f.gate.jobEnded)
}

func (f *Fleet) approved(j storage.Job) { f.notify(j, &f.obs.approved, nil) }

// Subscribe returns a channel of a job's updates and its cancel function.
func (f *Fleet) Subscribe(jobID string) (<-chan storage.Job, func()) {
	return f.events.subscribe(jobID)
}
