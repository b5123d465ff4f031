// Package drills is the console's side of restore drills (ARCHITECTURE.md,
// "Restore drills"): it completes a drill job's arguments before the fleet
// checks them, records each drill's outcome on the host whose backup it
// proved, and says when a host's drills are overdue.
//
// A drill proves one host (args.host_id, set here, never by the caller)
// and may run on another (args.target_host_id: a dedicated drill host bound
// to the repository). The job belongs to the host that runs it, like a
// restore to another host; its outcome belongs to the proven host:
//
//	POST /hosts/A/jobs {kind: drill, args: {target_host_id: B}}
//	  prepare: args.host_id = A, args.hostname = A's restic host name,
//	           the job goes to B (B must be bound, B must have the probe)
//	B's result → fleet ends the job → Record: A.last_drill,
//	           A.proven_restorable_at (a success), A's drill history
//	alerts: drill_failed on A (a failure), resolved by A's next success;
//	        drill_overdue on A from Overdue
//
// It observes the fleet like console/repos and console/alerts; the fleet
// calls it only through fleet.SetJobPrep.
package drills

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Drills records drill outcomes on the hosts they prove.
type Drills struct {
	store *storage.Store
	log   *slog.Logger
}

// New wires the drills into the fleet: a drill request is completed before
// it is checked, and every drill's end is recorded. Register it before the
// alerts, which read what it records.
func New(f *fleet.Fleet, log *slog.Logger) *Drills {
	if log == nil {
		log = slog.Default()
	}
	d := &Drills{store: f.Store(), log: log.With("component", "drills")}
	f.SetJobPrep(d.prepare)
	f.OnJobEnd(d.Record)
	return d
}

// prepare completes a drill request for host h (fleet.JobPrep): the proven
// host and its restic host name go into the arguments, whatever the caller
// put there; with a target host, the job runs there instead.
func (d *Drills) prepare(req *fleet.JobRequest, h *storage.Host, args []byte) ([]byte, error) {
	if req.Kind != wire.JobDrill {
		return args, nil
	}
	var a wire.DrillArgs
	if err := json.Unmarshal(args, &a); err != nil {
		return nil, fmt.Errorf("drill args: %w", err)
	}
	a.HostID, a.Hostname = h.ID, h.Hostname
	if a.SnapshotID == "" && h.Hostname == "" {
		// The agent finds the latest snapshot by restic's --host: without
		// the name it would drill another host's snapshot, or none.
		return nil, input.Errorf("host %s has not reported its host name yet: a drill cannot find its latest snapshot; give args.snapshot_id", name(*h))
	}
	if a.TargetHostID == h.ID {
		a.TargetHostID = ""
	}
	if a.TargetHostID != "" {
		t, err := d.store.GetHost(a.TargetHostID)
		switch {
		case errors.Is(err, storage.ErrNotFound):
			return nil, input.Errorf("drill target host %q does not exist", a.TargetHostID)
		case err != nil:
			return nil, err
		case !t.Enrolled:
			return nil, input.Errorf("drill target host %s has not enrolled an agent yet", name(t))
		}
		// From here on the fleet checks the host that runs the drill: it
		// must be bound to the repository and report the probe.
		req.HostID, *h = t.ID, t
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	norm, err := wire.NormalizeArgs(wire.JobDrill, b)
	if err != nil {
		return nil, fleet.ArgsInput(err)
	}
	return norm, nil
}

// Outcome is what a drill's end says about the host it proved.
type Outcome struct {
	// HostID is the proven host; RanOn the host that ran the drill.
	HostID, RanOn string
	JobID, RepoID string
	Status        string
	EndedAt       time.Time
	Error         string
	// OK: the drill succeeded without a mismatch.
	OK bool
	// Output is the agent's report (nil when it sent none, or one that
	// failed validation).
	Output *wire.DrillOutput
}

// Of reads a drill job's end; ok is false for another kind, and for a
// drill that never ran (cancelled, expired), which proves nothing either
// way.
func Of(j storage.Job) (o Outcome, ok bool) {
	if j.Kind != wire.JobDrill {
		return o, false
	}
	switch j.Status {
	case storage.JobSucceeded, storage.JobPartial, storage.JobFailed:
	default:
		return o, false
	}
	var a wire.DrillArgs
	_ = json.Unmarshal(j.Args, &a)
	o = Outcome{HostID: a.HostID, RanOn: j.HostID, JobID: j.ID, RepoID: j.RepoID, Status: j.Status, EndedAt: j.EndedAt, Error: j.Error}
	if o.HostID == "" {
		o.HostID = j.HostID
	}
	if len(j.Output) > 0 && string(j.Output) != "null" {
		var out wire.DrillOutput
		if json.Unmarshal(j.Output, &out) == nil && out.Validate() == nil {
			bound(&out)
			o.Output = &out
		}
	}
	o.OK = j.Status == storage.JobSucceeded && (o.Output == nil || len(o.Output.Mismatches) == 0)
	return o, true
}

// Bounds on an agent's figures: past them a figure is a lie or a bug, and
// would only bend the chart. 100 GiB/s is beyond any restore; a century of
// restore time is "never".
const (
	maxRate = 100 << 30
	maxRTO  = 100 * 365 * 24 * 3600
)

func bound(o *wire.DrillOutput) {
	if math.IsNaN(o.RestoreBytesPerS) || o.RestoreBytesPerS > maxRate {
		o.RestoreBytesPerS = 0
	}
	if math.IsNaN(o.EstimatedFullRestoreS) || o.EstimatedFullRestoreS > maxRTO {
		o.EstimatedFullRestoreS = 0
	}
}

// Record stores a drill's end on the host it proved: its last drill, the
// time it was last proven restorable, and its history. A result recorded
// before (a redelivery, an end seen twice) changes nothing.
func (d *Drills) Record(j storage.Job) {
	o, ok := Of(j)
	if !ok {
		return
	}
	last := &storage.LastDrill{JobID: o.JobID, Status: o.Status, EndedAt: o.EndedAt}
	if !o.OK && o.Status == storage.JobSucceeded {
		last.Status = storage.JobFailed // mismatches: not a success, whatever the agent said
	}
	if o.RanOn != o.HostID {
		last.RanOn = o.RanOn
	}
	point := storage.DrillPoint{JobID: o.JobID, At: o.EndedAt, Status: last.Status}
	if out := o.Output; out != nil {
		last.SnapshotID, last.RestoreBytesPerS, last.EstimatedFullRestoreS = out.SnapshotID, out.RestoreBytesPerS, out.EstimatedFullRestoreS
		last.FilesChecked, last.Mismatches = out.FilesChecked, len(out.Mismatches)
		point.RestoreBytesPerS, point.EstimatedFullRestoreS = out.RestoreBytesPerS, out.EstimatedFullRestoreS
		point.FilesChecked, point.BytesChecked, point.Mismatches = out.FilesChecked, out.BytesChecked, len(out.Mismatches)
	}
	// The history first, then the host: whoever sees the host's last
	// drill finds it in the history too (the e2e test read the history
	// between the two writes once, and a user could as well).
	if _, err := d.store.AddDrill(o.HostID, point); errors.Is(err, storage.ErrNotFound) {
		return // the host was deleted meanwhile
	} else if err != nil {
		d.log.Error("drill not added to its host's history", "job_id", o.JobID, "host_id", o.HostID, "error", err)
	}
	_, err := d.store.UpdateHost(o.HostID, func(h *storage.Host) error {
		if h.LastDrill == nil || !h.LastDrill.EndedAt.After(o.EndedAt) {
			h.LastDrill = last
		}
		if o.OK && o.EndedAt.After(h.ProvenRestorableAt) {
			h.ProvenRestorableAt = o.EndedAt
		}
		return nil
	})
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		d.log.Error("drill not recorded on its host", "job_id", o.JobID, "host_id", o.HostID, "error", err)
	}
}

// Proven states of a host, the dashboard's filter.
const (
	ProvenNever  = "never"
	ProvenFailed = "failed"
	ProvenOK     = "ok"
)

// ProvenStates in display order.
var ProvenStates = []string{ProvenOK, ProvenFailed, ProvenNever}

// Proven is h's proven state: never drilled, last drill failed, or ok.
func Proven(h storage.Host) string {
	switch {
	case h.LastDrill == nil:
		return ProvenNever
	case h.LastDrill.OK():
		return ProvenOK
	}
	return ProvenFailed
}

// maxNamed is how many mismatching paths an alert names.
const maxNamed = 5

// FailureMessage says why a drill of host hostName failed, naming the
// first mismatching paths.
func FailureMessage(o Outcome, hostName string) string {
	msg := fmt.Sprintf("restore drill %s of %s failed", o.JobID, hostName)
	if o.RanOn != o.HostID {
		msg += " (run on " + o.RanOn + ")"
	}
	if o.Error != "" {
		msg += ": " + o.Error
	}
	if o.Output != nil && len(o.Output.Mismatches) > 0 {
		m := o.Output.Mismatches
		var paths []string
		for _, x := range m[:min(len(m), maxNamed)] {
			p := x.Path
			if x.Reason != "" {
				p += " (" + x.Reason + ")"
			}
			paths = append(paths, p)
		}
		msg += fmt.Sprintf("; %d mismatching: %s", len(m), strings.Join(paths, ", "))
		if len(m) > maxNamed {
			msg += fmt.Sprintf(" and %d more", len(m)-maxNamed)
		}
	}
	return msg
}

func name(h storage.Host) string {
	if h.Name != "" {
		return h.Name
	}
	return h.ID
}
