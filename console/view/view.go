// Package view holds what the console shows of each record: the JSON the
// API answers with and the rows the pages render. Storage records are never
// shown as they are: a view names what may be shown (never a credential
// hash or a sealed secret) and adds what is derived (schedule state, next
// run, the host's state).
package view

import (
	"encoding/json"
	"maps"
	"slices"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Host is a host as the API shows it: never its credential hash.
type Host struct {
	ID            string              `json:"id"`
	Name          string              `json:"name"`
	Enrolled      bool                `json:"enrolled"`
	Online        bool                `json:"online"`
	OS            string              `json:"os,omitempty"`
	Arch          string              `json:"arch,omitempty"`
	Hostname      string              `json:"hostname,omitempty"`
	AgentVersion  string              `json:"agent_version,omitempty"`
	ResticVersion string              `json:"restic_version,omitempty"`
	LastSeen      *time.Time          `json:"last_seen"`
	CreatedAt     time.Time           `json:"created_at"`
	LastBackup    *storage.LastBackup `json:"last_backup"`
	LastJob       *storage.LastBackup `json:"last_job"`
	// Schedule state: desired version, what the agent applied, and whether
	// an online host is late applying it.
	ScheduleVersionDesired int64 `json:"schedule_version_desired"`
	ScheduleVersionApplied int64 `json:"schedule_version_applied"`
	SchedulePending        bool  `json:"schedule_pending"`
	// NextRun is the soonest run of the host's enabled schedules.
	NextRun *time.Time `json:"next_run"`
	// ClockSkewS is how far the agent's clock is ahead of the console's in
	// seconds (negative: behind), measured at its last connection.
	ClockSkewS float64 `json:"clock_skew_s,omitempty"`
	// ClockWarning: the skew is large enough to matter (schedules fire at
	// the wrong time, times the agent reports are clamped).
	ClockWarning bool `json:"clock_warning,omitempty"`
	// Labels are the host's key=value pairs ({} when it has none).
	Labels map[string]string `json:"labels"`
	// Hooks and Sources are the names the agent's own configuration
	// defines (the console cannot see or change the commands);
	// RestoreSources are the sources with a restore command. [] when none.
	Hooks          []string `json:"hooks"`
	Sources        []string `json:"sources"`
	RestoreSources []string `json:"restore_sources"`
	// LastDrill is the last restore drill of the host's backup (null:
	// never drilled); ProvenRestorableAt is when the last one that
	// succeeded ended (null: never).
	LastDrill          *storage.LastDrill `json:"last_drill"`
	ProvenRestorableAt *time.Time         `json:"proven_restorable_at"`
}

// clockWarnAt is the skew past which a host's clock is flagged.
const clockWarnAt = time.Minute

// HostOf is a host with its schedule state, read from the store.
func HostOf(st *storage.Store, h storage.Host) Host {
	hs, err := st.GetSchedules(h.ID)
	if err != nil {
		return hostRecord(h)
	}
	return HostWith(h, hs, time.Now())
}

// HostWith is a host with the given schedules' state.
func HostWith(h storage.Host, hs storage.HostSchedules, now time.Time) Host {
	v := hostRecord(h)
	v.ScheduleVersionDesired, v.ScheduleVersionApplied = hs.Version, hs.AppliedVersion
	v.SchedulePending = fleet.SchedulePending(hs, h.Online, now)
	for _, s := range hs.Effective() {
		if !s.Enabled {
			continue
		}
		if runs, err := schedules.EntryNextRuns(h.ID, s.Entry(), now, 1); err == nil && len(runs) == 1 {
			if v.NextRun == nil || runs[0].Before(*v.NextRun) {
				t := runs[0]
				v.NextRun = &t
			}
		}
	}
	return v
}

func hostRecord(h storage.Host) Host {
	v := Host{
		ID: h.ID, Name: h.Name, Enrolled: h.Enrolled, Online: h.Online, OS: h.OS, Arch: h.Arch, Hostname: h.Hostname,
		AgentVersion: h.AgentVersion, ResticVersion: h.ResticVersion, CreatedAt: h.CreatedAt,
		LastBackup: h.LastBackup, LastJob: h.LastJob,
		ClockSkewS: h.ClockSkew.Seconds(), ClockWarning: h.ClockSkew > clockWarnAt || h.ClockSkew < -clockWarnAt,
		Labels: maps.Clone(h.Labels),
		Hooks:  orEmpty(h.Hooks), Sources: orEmpty(h.Sources), RestoreSources: orEmpty(h.RestoreSources),
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	if !h.LastSeen.IsZero() {
		t := h.LastSeen
		v.LastSeen = &t
	}
	if h.LastDrill != nil {
		d := *h.LastDrill
		v.LastDrill = &d
	}
	if !h.ProvenRestorableAt.IsZero() {
		t := h.ProvenRestorableAt
		v.ProvenRestorableAt = &t
	}
	return v
}

func orEmpty(s []string) []string {
	if s == nil {
		return []string{}
	}
	return slices.Clone(s)
}

// Repo is a repository without its secrets.
type Repo struct {
	ID          string              `json:"id"`
	Name        string              `json:"name"`
	URL         string              `json:"url"`
	CreatedAt   time.Time           `json:"created_at"`
	Health      *storage.RepoHealth `json:"health"`
	Maintenance *Maintenance        `json:"maintenance,omitempty"`
	// Hosts may receive the repository's secrets (its access list).
	Hosts []string `json:"hosts"`
	// RotationJobID: a key rotation is under way (POST
	// /repos/{id}/rotate-password); PasswordRotatedAt: the last one's end.
	RotationJobID     string     `json:"rotation_job_id,omitempty"`
	PasswordRotatedAt *time.Time `json:"password_rotated_at,omitempty"`
}

// Maintenance is where a repository's destructive work runs.
type Maintenance struct {
	URL    string `json:"url"`
	HostID string `json:"host_id"`
}

// RepoOf is the view of a repository.
func RepoOf(rp storage.Repo) Repo {
	v := Repo{ID: rp.ID, Name: rp.Name, URL: rp.DisplayURL, CreatedAt: rp.CreatedAt, Health: rp.Health, Hosts: rp.Hosts,
		RotationJobID: rp.RotationJobID, PasswordRotatedAt: rp.PasswordRotatedAt}
	if v.Hosts == nil {
		v.Hosts = []string{}
	}
	if rp.MaintenanceHostID != "" {
		v.Maintenance = &Maintenance{URL: rp.MaintenanceDisplay, HostID: rp.MaintenanceHostID}
	}
	return v
}

// Schedule is one schedule with its next runs.
type Schedule struct {
	schedules.Schedule
	NextRuns []time.Time `json:"next_runs"`
}

// Schedules is a host's schedule set and what its agent applied.
type Schedules struct {
	Version        int64                     `json:"version"`
	AppliedVersion int64                     `json:"applied_version"`
	AppliedAt      *time.Time                `json:"applied_at"`
	Pending        bool                      `json:"pending"`
	Skipped        []storage.SkippedSchedule `json:"skipped"`
	Schedules      []Schedule                `json:"schedules"`
}

// SchedulesOf is the view of a host's schedules; online is whether the
// host is connected (only an online host can be late applying them).
func SchedulesOf(hs storage.HostSchedules, online bool) Schedules {
	now := time.Now()
	v := Schedules{Version: hs.Version, AppliedVersion: hs.AppliedVersion, Skipped: hs.Skipped,
		Pending: fleet.SchedulePending(hs, online, now), Schedules: []Schedule{}}
	if v.Skipped == nil {
		v.Skipped = []storage.SkippedSchedule{}
	}
	if !hs.AppliedAt.IsZero() {
		t := hs.AppliedAt
		v.AppliedAt = &t
	}
	for _, s := range hs.Effective() {
		sv := Schedule{Schedule: s, NextRuns: []time.Time{}}
		if s.Enabled {
			if runs, err := schedules.EntryNextRuns(hs.HostID, s.Entry(), now, 5); err == nil {
				sv.NextRuns = runs
			}
		}
		v.Schedules = append(v.Schedules, sv)
	}
	return v
}

// Job is a job as the API and the live updates show it.
type Job struct {
	ID          string            `json:"id"`
	HostID      string            `json:"host_id"`
	RepoID      string            `json:"repo_id"`
	Kind        string            `json:"kind"`
	Args        json.RawMessage   `json:"args,omitempty"`
	ActorKind   string            `json:"actor_kind"`
	Actor       string            `json:"actor,omitempty"`
	ScheduleID  string            `json:"schedule_id,omitempty"`
	ScheduledAt time.Time         `json:"scheduled_at,omitzero"`
	CatchUp     bool              `json:"catch_up,omitempty"`
	Status      string            `json:"status"`
	CreatedAt   time.Time         `json:"created_at"`
	ExpiresAt   time.Time         `json:"expires_at,omitzero"`
	StartedAt   time.Time         `json:"started_at,omitzero"`
	EndedAt     time.Time         `json:"ended_at,omitzero"`
	ExitCode    *int              `json:"exit_code,omitempty"`
	Error       string            `json:"error,omitempty"`
	StderrTail  string            `json:"stderr_tail,omitempty"`
	SnapshotID  string            `json:"snapshot_id,omitempty"`
	Summary     json.RawMessage   `json:"summary,omitempty"`
	Output      json.RawMessage   `json:"output,omitempty"`
	Progress    *storage.Progress `json:"progress,omitempty"`
	TimeoutS    int               `json:"timeout_s,omitempty"`
	Held        bool              `json:"held,omitempty"`
	Waited      bool              `json:"waited,omitempty"`
	ApprovedBy  string            `json:"approved_by,omitempty"`
	// Hooks are the runs of a backup's hooks (name, phase, exit code,
	// duration, output tail); a failed before-hook skipped restic.
	Hooks []wire.HookRun `json:"hooks,omitempty"`
	// SourceSnapshots are a backup's snapshots, one per source and one
	// for its paths (source ""), when it named sources.
	SourceSnapshots []wire.SourceSnapshot `json:"source_snapshots,omitempty"`
	// Bandwidth is the limit in force for a backup, copy or restore (from
	// its arguments; absent when unlimited), with its text for the page.
	Bandwidth     *Bandwidth `json:"bandwidth,omitempty"`
	BandwidthText string     `json:"bandwidth_text,omitempty"`
}

// JobOf is the view of a job.
func JobOf(j storage.Job) Job {
	v := Job{
		ID: j.ID, HostID: j.HostID, RepoID: j.RepoID, Kind: j.Kind, Args: j.Args, ActorKind: j.ActorKind, Actor: j.Actor,
		ScheduleID: j.ScheduleID, ScheduledAt: j.ScheduledAt, CatchUp: j.CatchUp, Status: j.Status,
		CreatedAt: j.CreatedAt, ExpiresAt: j.ExpiresAt, StartedAt: j.StartedAt, EndedAt: j.EndedAt,
		ExitCode: j.ExitCode, Error: j.Error, StderrTail: j.StderrTail, SnapshotID: j.SnapshotID,
		Summary: j.Summary, Output: j.Output, Progress: j.Progress, TimeoutS: j.TimeoutS, Held: j.Held, Waited: j.Waited, ApprovedBy: j.ApprovedBy,
		Hooks: j.Hooks, SourceSnapshots: SourceSnapshots(j), Bandwidth: BandwidthOf(j),
	}
	if v.Bandwidth != nil {
		v.BandwidthText = v.Bandwidth.String()
	}
	return v
}

// SourceSnapshots are the per-source snapshots of a backup's output (nil
// for any other job, or a backup of paths alone).
func SourceSnapshots(j storage.Job) []wire.SourceSnapshot {
	if j.Kind != wire.JobBackup || len(j.Output) == 0 {
		return nil
	}
	var out wire.BackupOutput
	if json.Unmarshal(j.Output, &out) != nil {
		return nil
	}
	return out.Snapshots
}

// Jobs is the view of a list of jobs (never null).
func Jobs(js []storage.Job) []Job {
	out := make([]Job, 0, len(js))
	for _, j := range js {
		out = append(out, JobOf(j))
	}
	return out
}
