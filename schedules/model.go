package schedules

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// Kinds a schedule can run: the wire table's schedulable kinds.
var Kinds = func() map[string]bool {
	m := map[string]bool{}
	for _, k := range kindNames {
		m[k] = true
	}
	return m
}()

var kindNames = wire.KindNames(func(k wire.KindInfo) bool { return k.Schedulable })

// DefaultJitter spreads a fleet's fires of one cron time over this window
// when a schedule does not say otherwise.
const DefaultJitter = 5 * time.Minute

// Retention is a forget policy (the wire contract's type).
type Retention = wire.Retention

// Schedule is the console's full record of one schedule. Only Entry()
// travels to the agent.
type Schedule struct {
	ID       string `json:"id"`
	Name     string `json:"name"`
	Kind     string `json:"kind"`
	Cron     string `json:"cron"`
	Timezone string `json:"timezone,omitempty"`
	Enabled  bool   `json:"enabled"`
	RepoID   string `json:"repo_id"`
	// JitterS is the spread window in seconds; nil means DefaultJitter,
	// 0 fires exactly on time.
	JitterS *int `json:"jitter_s,omitempty"`

	// backup
	Paths    []string `json:"paths,omitempty"`
	Excludes []string `json:"excludes,omitempty"`
	Tags     []string `json:"tags,omitempty"`
	// Hooks and Sources name commands of the agent's own configuration
	// (never a command: see wire.BackupArgs); the limits are KiB/s, 0 none.
	Hooks            []string `json:"hooks,omitempty"`
	Sources          []string `json:"sources,omitempty"`
	LimitUploadKiB   int      `json:"limit_upload_kib,omitempty"`
	LimitDownloadKiB int      `json:"limit_download_kib,omitempty"`
	// LimitWindows (backup and copy) override the limits above at times of
	// the week: a fire takes the limits in force at its scheduled time
	// (LimitsAt).
	LimitWindows []LimitWindow `json:"limit_windows,omitempty"`
	// forget
	Retention *Retention `json:"retention,omitempty"`
	Prune     bool       `json:"prune,omitempty"`
	// prune
	MaxUnused string `json:"max_unused,omitempty"`
	// check
	ReadDataSubset string `json:"read_data_subset,omitempty"`
	// drill (Paths: paths always restored besides the sample)
	SampleFiles int    `json:"sample_files,omitempty"`
	SampleBytes int64  `json:"sample_bytes,omitempty"`
	Probe       string `json:"probe,omitempty"`
	// copy: the destination repository (RepoID is the source)
	ToRepoID string `json:"to_repo_id,omitempty"`

	// PolicyID names the policy the schedule came from (empty: the host's
	// own).
	PolicyID string `json:"policy_id,omitempty"`
}

// Jitter returns the window width. "@every" schedules are not tied to a
// wall-clock time the whole fleet shares, so they get no default jitter.
func (s Schedule) Jitter() time.Duration {
	if s.JitterS == nil {
		if strings.HasPrefix(strings.TrimSpace(s.Cron), "@every") {
			return 0
		}
		return DefaultJitter
	}
	return time.Duration(*s.JitterS) * time.Second
}

// Entry is what the agent needs to fire the schedule.
func (s Schedule) Entry() wire.ScheduleEntry {
	return wire.ScheduleEntry{ID: s.ID, Kind: s.Kind, Cron: s.Cron, Timezone: s.Timezone, Enabled: s.Enabled, JitterS: int(s.Jitter() / time.Second)}
}

// Validate checks one schedule and says what is wrong in an operator's terms.
func (s Schedule) Validate() error {
	prefix := fmt.Sprintf("schedule %q", s.Name)
	if strings.TrimSpace(s.Name) == "" || len(s.Name) > 200 {
		return fmt.Errorf("schedule %s: name is required (at most 200 characters)", s.ID)
	}
	if s.ID != "" && !wire.ValidID(s.ID) {
		return fmt.Errorf("%s: id %q may only hold letters, digits, '-' and '_'", prefix, s.ID)
	}
	if !Kinds[s.Kind] {
		return fmt.Errorf("%s: kind %q is not one of %s", prefix, s.Kind, strings.Join(kindNames, ", "))
	}
	if _, err := ParseCron(s.Cron, s.Timezone); err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	if s.RepoID == "" {
		return fmt.Errorf("%s: repo_id is required", prefix)
	}
	if s.JitterS != nil && (*s.JitterS < 0 || *s.JitterS > 6*3600) {
		return fmt.Errorf("%s: jitter_s must be between 0 and 21600", prefix)
	}
	// Values of fields the kind does not use are checked too: nothing
	// stored may be read as an option later.
	for _, list := range [][]string{s.Paths, s.Excludes, s.Tags} {
		for _, v := range list {
			if err := wire.CheckArg(v); err != nil {
				return fmt.Errorf("%s: %w", prefix, err)
			}
		}
	}
	if err := s.validateWindows(); err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	// The job a fire makes must pass the same checks as any other.
	args, err := s.JobArgs()
	if err == nil {
		_, err = wire.DecodeArgs(s.Kind, args)
	}
	if err != nil {
		return fmt.Errorf("%s: %w", prefix, err)
	}
	return nil
}

// JobArgs builds the arguments of the job the schedule runs (what the
// console stores and sends when it fires).
func (s Schedule) JobArgs() (json.RawMessage, error) {
	var v any
	switch s.Kind {
	case wire.JobBackup:
		v = wire.BackupArgs{Paths: s.Paths, Excludes: s.Excludes, Tags: s.Tags, Hooks: s.Hooks, Sources: s.Sources,
			LimitUploadKiB: s.LimitUploadKiB, LimitDownloadKiB: s.LimitDownloadKiB}
	case wire.JobForget:
		if s.Retention == nil {
			return nil, fmt.Errorf("forget schedule without retention")
		}
		v = wire.ForgetArgs{Retention: *s.Retention, Prune: s.Prune, Tags: s.Tags}
	case wire.JobPrune:
		v = wire.PruneArgs{MaxUnused: s.MaxUnused}
	case wire.JobCheck:
		v = wire.CheckArgs{ReadDataSubset: s.ReadDataSubset}
	case wire.JobCopy:
		v = wire.CopyArgs{ToRepoID: s.ToRepoID, LimitUploadKiB: s.LimitUploadKiB, LimitDownloadKiB: s.LimitDownloadKiB}
	case wire.JobDrill:
		v = wire.DrillArgs{SampleFiles: s.SampleFiles, SampleBytes: s.SampleBytes, Probe: s.Probe, Paths: s.Paths}
	default:
		return nil, fmt.Errorf("schedule kind %q", s.Kind)
	}
	return json.Marshal(v)
}

// ValidateSet checks a host's whole set: each schedule, and unique IDs and names.
func ValidateSet(set []Schedule) error {
	if len(set) > wire.MaxSchedules {
		return fmt.Errorf("%d schedules; at most %d per host", len(set), wire.MaxSchedules)
	}
	ids, names := map[string]bool{}, map[string]bool{}
	for _, s := range set {
		if err := s.Validate(); err != nil {
			return err
		}
		if s.ID != "" {
			if ids[s.ID] {
				return fmt.Errorf("schedule id %q appears twice", s.ID)
			}
			ids[s.ID] = true
		}
		if names[s.Name] {
			return fmt.Errorf("schedule name %q appears twice", s.Name)
		}
		names[s.Name] = true
	}
	return nil
}

// Offset is the host's stable place in a schedule's jitter window: the same
// host and schedule always fire at the same offset, different hosts spread
// evenly over the window.
func Offset(hostID, scheduleID string, window time.Duration) time.Duration {
	if window <= 0 {
		return 0
	}
	h := fnv.New64a()
	h.Write([]byte(hostID))
	h.Write([]byte{0})
	h.Write([]byte(scheduleID))
	return time.Duration(h.Sum64()%uint64(window/time.Second)) * time.Second
}

// EntryNextRuns returns the next n fire times (jitter included) of an entry on a host.
func EntryNextRuns(hostID string, e wire.ScheduleEntry, from time.Time, n int) ([]time.Time, error) {
	s, err := ParseCron(e.Cron, e.Timezone)
	if err != nil {
		return nil, err
	}
	off := Offset(hostID, e.ID, time.Duration(e.JitterS)*time.Second)
	var out []time.Time
	for _, t := range NextRuns(s, from.Add(-off), n) {
		out = append(out, t.Add(off))
	}
	return out, nil
}
