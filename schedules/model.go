package schedules

import (
	"fmt"
	"hash/fnv"
	"regexp"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// Kinds a schedule can run.
var Kinds = map[string]bool{wire.JobBackup: true, wire.JobForget: true, wire.JobPrune: true, wire.JobCheck: true}

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
	// forget
	Retention *Retention `json:"retention,omitempty"`
	Prune     bool       `json:"prune,omitempty"`
	// prune
	MaxUnused string `json:"max_unused,omitempty"`
	// check
	ReadDataSubset string `json:"read_data_subset,omitempty"`
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

var (
	keepWithinRe = regexp.MustCompile(`^([0-9]+y)?([0-9]+m)?([0-9]+d)?([0-9]+h)?$`)
	subsetRe     = regexp.MustCompile(`^([0-9]+/[0-9]+|[0-9]+(\.[0-9]+)?%|[0-9]+[KMGT]?)$`)
	maxUnusedRe  = regexp.MustCompile(`^(unlimited|[0-9]+(\.[0-9]+)?%|[0-9]+[KMGT]?)$`)
)

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
		return fmt.Errorf("%s: kind %q is not one of backup, forget, prune, check", prefix, s.Kind)
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
	for _, list := range [][]string{s.Paths, s.Excludes, s.Tags} {
		for _, v := range list {
			if err := checkValue(v); err != nil {
				return fmt.Errorf("%s: %w", prefix, err)
			}
		}
	}
	switch s.Kind {
	case wire.JobBackup:
		if len(s.Paths) == 0 {
			return fmt.Errorf("%s: a backup needs at least one path", prefix)
		}
	case wire.JobForget:
		if s.Retention == nil {
			return fmt.Errorf("%s: a forget needs a retention with at least one keep rule", prefix)
		}
		if err := ValidateRetention(*s.Retention); err != nil {
			return fmt.Errorf("%s: %w", prefix, err)
		}
	case wire.JobPrune:
		if err := ValidateMaxUnused(s.MaxUnused); err != nil {
			return fmt.Errorf("%s: %w", prefix, err)
		}
	case wire.JobCheck:
		if err := ValidateSubset(s.ReadDataSubset); err != nil {
			return fmt.Errorf("%s: %w", prefix, err)
		}
	}
	return nil
}

// ValidateRetention checks a forget policy: at least one rule, no negative
// counts, keep_within in restic's duration form.
func ValidateRetention(r Retention) error {
	if (r.KeepLast|r.KeepHourly|r.KeepDaily|r.KeepWeekly|r.KeepMonthly|r.KeepYearly) == 0 && r.KeepWithin == "" {
		return fmt.Errorf("a forget needs a retention with at least one keep rule")
	}
	if r.KeepLast < 0 || r.KeepHourly < 0 || r.KeepDaily < 0 || r.KeepWeekly < 0 || r.KeepMonthly < 0 || r.KeepYearly < 0 {
		return fmt.Errorf("keep counts must not be negative")
	}
	if r.KeepWithin != "" && !keepWithinRe.MatchString(r.KeepWithin) {
		return fmt.Errorf("keep_within %q is not a duration such as 30d or 1y6m", r.KeepWithin)
	}
	return nil
}

// ValidateMaxUnused checks prune's max_unused (empty means restic's default).
func ValidateMaxUnused(v string) error {
	if v != "" && !maxUnusedRe.MatchString(v) {
		return fmt.Errorf("max_unused %q is not a size, a percentage or \"unlimited\"", v)
	}
	return nil
}

// ValidateSubset checks check's read_data_subset (empty means none).
func ValidateSubset(v string) error {
	if v != "" && !subsetRe.MatchString(v) {
		return fmt.Errorf("read_data_subset %q is not n/t, a percentage or a size", v)
	}
	return nil
}

func checkValue(v string) error {
	switch {
	case v == "":
		return fmt.Errorf("empty value")
	case strings.HasPrefix(v, "-"):
		return fmt.Errorf("%q starts with '-' and would be read as an option", v)
	case strings.ContainsAny(v, "\x00\r\n"):
		return fmt.Errorf("%q contains control characters", v)
	}
	return nil
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
