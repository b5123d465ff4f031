package wire

import (
	"fmt"
	"time"
)

// MaxSchedules bounds the schedules of one host.
const MaxSchedules = 200

// ScheduleEntry is what an agent needs to fire one schedule: no paths, no
// repository, no secrets. The console builds the job from its own records.
type ScheduleEntry struct {
	ID       string `json:"id"`
	Kind     string `json:"kind"`
	Cron     string `json:"cron"`
	Timezone string `json:"timezone,omitempty"`
	Enabled  bool   `json:"enabled"`
	// JitterS is the width of the window over which the fleet's fires are
	// spread; each host fires at a stable offset within it.
	JitterS int `json:"jitter_s,omitempty"`
}

// SchedulesDesired is retained on hosts/{host}/schedules/desired.
type SchedulesDesired struct {
	V         int             `json:"v"`
	Version   int64           `json:"version"`
	Schedules []ScheduleEntry `json:"schedules"`
}

func (d *SchedulesDesired) Validate() error {
	if d.Version < 0 {
		return fmt.Errorf("%w: desired: negative version", ErrInvalid)
	}
	if len(d.Schedules) > MaxSchedules {
		return fmt.Errorf("%w: desired: %d schedules, at most %d", ErrInvalid, len(d.Schedules), MaxSchedules)
	}
	seen := map[string]bool{}
	for _, e := range d.Schedules {
		if !ValidID(e.ID) {
			return fmt.Errorf("%w: desired: bad schedule id %q", ErrInvalid, e.ID)
		}
		if seen[e.ID] {
			return fmt.Errorf("%w: desired: schedule id %q twice", ErrInvalid, e.ID)
		}
		seen[e.ID] = true
		if e.JitterS < 0 || e.JitterS > 86400 {
			return fmt.Errorf("%w: desired: jitter_s %d out of range", ErrInvalid, e.JitterS)
		}
	}
	return nil
}

// SkippedSchedule names a schedule the agent could not install, and why.
type SkippedSchedule struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

// NextRun is the agent's own view of when a schedule fires next.
type NextRun struct {
	ID   string    `json:"id"`
	Next time.Time `json:"next"`
}

// SchedulesReported is retained on hosts/{host}/schedules/reported.
type SchedulesReported struct {
	V         int               `json:"v"`
	Version   int64             `json:"version"`
	AppliedAt time.Time         `json:"applied_at"`
	Skipped   []SkippedSchedule `json:"skipped,omitempty"`
	Next      []NextRun         `json:"next,omitempty"`
}

func (r *SchedulesReported) Validate() error {
	if r.Version < 0 {
		return fmt.Errorf("%w: reported: negative version", ErrInvalid)
	}
	if r.AppliedAt.IsZero() {
		return fmt.Errorf("%w: reported: applied_at required", ErrInvalid)
	}
	if len(r.Skipped) > MaxSchedules || len(r.Next) > MaxSchedules {
		return fmt.Errorf("%w: reported: too many entries", ErrInvalid)
	}
	for _, s := range r.Skipped {
		if !ValidID(s.ID) {
			return fmt.Errorf("%w: reported: bad schedule id %q", ErrInvalid, s.ID)
		}
	}
	for _, n := range r.Next {
		if !ValidID(n.ID) {
			return fmt.Errorf("%w: reported: bad schedule id %q", ErrInvalid, n.ID)
		}
	}
	return nil
}

// Fire is sent on hosts/{host}/fires when a schedule's time has come.
type Fire struct {
	V               int       `json:"v"`
	FireID          string    `json:"fire_id"`
	ScheduleID      string    `json:"schedule_id"`
	ScheduleVersion int64     `json:"schedule_version"`
	ScheduledAt     time.Time `json:"scheduled_at"`
	FiredAt         time.Time `json:"fired_at"`
	CatchUp         bool      `json:"catch_up,omitempty"`
}

func (f *Fire) Validate() error {
	if !ValidID(f.FireID) {
		return fmt.Errorf("%w: fire: bad fire_id %q", ErrInvalid, f.FireID)
	}
	if !ValidID(f.ScheduleID) {
		return fmt.Errorf("%w: fire: bad schedule_id %q", ErrInvalid, f.ScheduleID)
	}
	if f.ScheduledAt.IsZero() || f.FiredAt.IsZero() {
		return fmt.Errorf("%w: fire: scheduled_at and fired_at required", ErrInvalid)
	}
	if f.ScheduleVersion < 1 {
		return fmt.Errorf("%w: fire: schedule_version must be >= 1", ErrInvalid)
	}
	return nil
}

func DecodeSchedulesDesired(b []byte) (SchedulesDesired, error) { return Decode[SchedulesDesired](b) }
func DecodeSchedulesReported(b []byte) (SchedulesReported, error) {
	return Decode[SchedulesReported](b)
}
func DecodeFire(b []byte) (Fire, error) { return Decode[Fire](b) }
