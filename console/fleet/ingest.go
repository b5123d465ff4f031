package fleet

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

var _ broker.Ingestor = (*Fleet)(nil)

// Ingest stores one agent message. It runs before the broker acknowledges
// the message, and every branch is idempotent: QoS 1 may deliver twice.
func (f *Fleet) Ingest(ctx context.Context, host string, t wire.Topic, payload []byte) error {
	if t.Host != host {
		return fmt.Errorf("%w: host %s published on %s's topic", broker.ErrRejected, host, t.Host)
	}
	var err error
	switch t.Kind {
	case wire.KindStatus:
		err = f.ingestStatus(host, payload)
	case wire.KindProgress:
		err = f.ingestProgress(host, t.Job, payload)
	case wire.KindResult:
		err = f.ingestResult(host, t.Job, payload)
	case wire.KindOutput:
		err = f.ingestOutput(host, t.Job, payload)
	case wire.KindSchedulesReported:
		err = f.ingestReported(host, payload)
	case wire.KindFires:
		err = f.ingestFire(host, payload)
	default:
		err = fmt.Errorf("%w: %s messages are not handled by this console", broker.ErrRejected, t.Kind)
	}
	if errors.Is(err, wire.ErrInvalid) || errors.Is(err, storage.ErrNotFound) {
		err = fmt.Errorf("%w: %w", broker.ErrRejected, err)
	}
	switch {
	case err == nil:
		f.inst.Ingested(t.Kind)
	case errors.Is(err, broker.ErrRejected):
		f.inst.Rejected()
	}
	return err
}

func (f *Fleet) ingestStatus(host string, payload []byte) error {
	st, err := wire.DecodeStatus(payload)
	if err != nil {
		return err
	}
	now := time.Now().UTC()
	var wasOnline, restarted bool
	_, err = f.store.UpdateHost(host, func(h *storage.Host) error {
		wasOnline, restarted = h.Online, !h.StartedAt.Equal(st.StartedAt)
		h.Online = st.Online
		h.LastSeen = now
		if st.Online {
			h.OS, h.Arch, h.Hostname = st.OS, st.Arch, st.Hostname
			h.AgentVersion, h.ResticVersion = st.AgentVersion, st.ResticVersion
			h.StartedAt = st.StartedAt
			h.Hooks, h.Sources, h.RestoreSources = st.Hooks, st.Sources, st.RestoreSources
			if !st.SentAt.IsZero() {
				h.ClockSkew = st.SentAt.Sub(now).Round(time.Second)
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("status of %s: %w", host, err)
	}
	if st.Online {
		// The jobs the agent runs now: a job the console believes running
		// that is not among them, and that reports nothing more, was lost.
		f.lost.note(host, st.RunningJobs, now)
		// Queued jobs and the desired schedules are re-sent when the host
		// comes online, after an agent restart, and at the first connection
		// this console sees (the broker may have lost the session while the
		// store still says online) — not at every status an agent chooses
		// to publish: hostOnline spaces them a minute apart per host.
		if !wasOnline || restarted || f.online.firstSeen(host) {
			f.hostOnline(host)
		}
	}
	return nil
}

// jobOf loads a job and checks that the sender owns it.
func (f *Fleet) jobOf(host, jobID string) (storage.Job, error) {
	j, err := f.store.GetJob(jobID)
	if err != nil {
		return j, fmt.Errorf("job %s: %w", jobID, err)
	}
	if j.HostID != host {
		return j, fmt.Errorf("%w: job %s belongs to another host", broker.ErrRejected, jobID)
	}
	return j, nil
}

func (f *Fleet) ingestProgress(host, jobID string, payload []byte) error {
	p, err := wire.DecodeProgress(payload)
	if err != nil {
		return err
	}
	if p.JobID != jobID {
		return fmt.Errorf("%w: progress for %s on the topic of %s", broker.ErrRejected, p.JobID, jobID)
	}
	now := time.Now().UTC()
	apply := func(j *storage.Job) {
		if p.Waited {
			j.Waited = true
		}
		j.Progress = &storage.Progress{
			Seq: p.Seq, Percent: p.Percent, BytesDone: p.BytesDone, BytesTotal: p.BytesTotal,
			FilesDone: p.FilesDone, FilesTotal: p.FilesTotal, CurrentFiles: p.CurrentFiles,
			ETASeconds: p.ETASeconds, UpdatedAt: now,
		}
	}
	// A running job's progress after its first stays in memory and is
	// written behind (progress.go): it is acknowledged without a store write.
	if j, ok, changed, err := f.progress.Update(jobID, host, p.Seq, apply); ok {
		if err != nil {
			return fmt.Errorf("%w: job %s: %w", broker.ErrRejected, jobID, err)
		}
		if changed {
			f.events.publish(j)
		}
		return nil
	}
	// The first progress (or the first after a restart) is stored: the job
	// becomes running. Ownership is checked inside the update: reading the
	// job once more before it cost a fifth of the ingest's CPU at fleet scale.
	changed := false
	j, err := f.store.UpdateJob(jobID, func(j *storage.Job) error {
		changed = false // fn runs again when the job changed meanwhile
		if j.HostID != host {
			return fmt.Errorf("%w: job %s belongs to another host", broker.ErrRejected, jobID)
		}
		if storage.TerminalStatus(j.Status) {
			return nil // late progress after the result: nothing to do
		}
		if j.Progress != nil && p.Seq <= j.Progress.Seq {
			return nil // duplicate or reordered
		}
		changed = true
		if j.Status == storage.JobQueued {
			j.Status = storage.JobRunning
		}
		if j.StartedAt.IsZero() && !p.StartedAt.IsZero() {
			j.StartedAt = clampTime(p.StartedAt, now)
		}
		apply(j)
		return nil
	})
	if err != nil {
		return fmt.Errorf("progress of %s: %w", jobID, err)
	}
	if changed {
		f.progress.Put(j)
		f.gate.started(j)
		f.events.publish(j)
	}
	return nil
}

func (f *Fleet) ingestResult(host, jobID string, payload []byte) error {
	r, err := wire.DecodeResult(payload)
	if err != nil {
		return err
	}
	if r.JobID != jobID {
		return fmt.Errorf("%w: result for %s on the topic of %s", broker.ErrRejected, r.JobID, jobID)
	}
	if _, err := f.jobOf(host, jobID); err != nil {
		return err
	}
	received := time.Now().UTC()
	changed := false
	j, err := f.store.UpdateJob(jobID, func(j *storage.Job) error {
		changed = false // fn runs again when the job changed meanwhile
		// A console-side end (expired, cancelled while queued, lost) has no
		// exit code: what the agent reports really happened wins over it.
		// (Records from before EndedByConsole: an expired or cancelled job
		// without an exit code.)
		consoleEnded := j.EndedByConsole || (j.Status == storage.JobExpired || j.Status == storage.JobCancelled) && j.ExitCode == nil
		if storage.TerminalStatus(j.Status) && !consoleEnded {
			return nil // already recorded: a redelivery
		}
		if r.Status == storage.JobHeld && (j.Status == storage.JobHeld || j.ApprovedBy != "" || storage.TerminalStatus(j.Status)) {
			return nil // a held result again, or one overtaken by the approval or a cancel
		}
		changed = true
		j.Status = r.Status
		j.EndedByConsole = false
		// The agent's clock is trusted only within maxSkew of the
		// console's: a result dated in 2099 must not freeze the host's last
		// backup and hide its staleness.
		if !r.StartedAt.IsZero() {
			j.StartedAt = clampTime(r.StartedAt, received)
		}
		j.EndedAt = clampTime(r.EndedAt, received)
		code := r.ExitCode
		j.ExitCode = &code
		j.Error = r.Error
		j.StderrTail = r.StderrTail
		j.SnapshotID = r.SnapshotID
		j.Summary = r.Summary
		j.Output, j.Hooks = r.Output, r.Hooks
		j.Waited = j.Waited || r.Waited
		// The progress not yet written behind goes with the result.
		if lp := f.progress.Latest(jobID); lp != nil && (j.Progress == nil || lp.Seq > j.Progress.Seq) {
			j.Progress = lp
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("result of %s: %w", jobID, err)
	}
	f.progress.Drop(jobID)
	if !changed {
		return nil
	}
	if j.Status == storage.JobHeld {
		f.log.Warn("forget held by its guard", "job_id", j.ID, "host_id", host, "reason", j.Error)
		f.held(j)
		return nil
	}
	last := &storage.LastBackup{JobID: j.ID, Kind: j.Kind, Status: j.Status, EndedAt: j.EndedAt, SnapshotID: j.SnapshotID}
	if _, err := f.store.UpdateHost(host, func(h *storage.Host) error {
		if h.LastJob == nil || !h.LastJob.EndedAt.After(j.EndedAt) {
			h.LastJob = last
		}
		if j.Kind == wire.JobBackup && (h.LastBackup == nil || !h.LastBackup.EndedAt.After(j.EndedAt)) {
			h.LastBackup = last
		}
		ok := j.Status == storage.JobSucceeded || j.Status == storage.JobPartial
		if j.Kind == wire.JobBackup && ok && (h.LastSuccess == nil || !h.LastSuccess.EndedAt.After(j.EndedAt)) {
			h.LastSuccess = last
		}
		return nil
	}); err != nil {
		return fmt.Errorf("result of %s: host: %w", jobID, err)
	}
	f.ended(j)
	// One line per job is noise at fleet scale: a job that did not succeed
	// is worth an operator's eye, a success is in the job record.
	level := slog.LevelDebug
	if j.Status != storage.JobSucceeded {
		level = slog.LevelInfo
	}
	f.log.Log(context.Background(), level, "job ended", "job_id", j.ID, "host_id", host, "kind", j.Kind, "status", j.Status, "snapshot_id", j.SnapshotID)
	return nil
}

// maxSkew is how far ahead of the console's clock an agent's times are
// taken as they are: a little drift and the time a message takes; beyond it
// the console's receive time stands in.
const maxSkew = 2 * time.Minute

// clampTime bounds a time an agent claims by when the console received it.
func clampTime(t, received time.Time) time.Time {
	if t.After(received.Add(maxSkew)) {
		return received.UTC()
	}
	return t
}

// ingestOutput hands an index job's output to its handler, once the sender
// is known to own the job.
func (f *Fleet) ingestOutput(host, jobID string, payload []byte) error {
	h := f.output.Load()
	if h == nil {
		return fmt.Errorf("%w: this console takes no job output", broker.ErrRejected)
	}
	j, err := f.jobOf(host, jobID)
	if err != nil {
		return err
	}
	return (*h)(host, j, payload)
}
