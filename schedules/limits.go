package schedules

import (
	"encoding/json"
	"fmt"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// MaxLimitWindows bounds a schedule's bandwidth windows: a few office-hours
// rules are the use; more would be a timetable nobody can read.
const MaxLimitWindows = 10

// LimitWindow is a time of the week when a schedule's jobs run under other
// bandwidth limits (KiB/s, 0 none), e.g. 5 MiB/s upload on weekdays from
// 08:00 to 18:00. Times are in the schedule's time zone.
//
// Days names the days a window starts on ("mon" … "sun"; none means every
// day). From is inclusive, To exclusive; "24:00" is the end of the day. A
// window whose To is before its From runs overnight: "22:00"–"06:00" on
// "fri" covers Friday 22:00 to Saturday 06:00.
type LimitWindow struct {
	Days             []string `json:"days,omitempty"`
	From             string   `json:"from"`
	To               string   `json:"to"`
	LimitUploadKiB   int      `json:"limit_upload_kib,omitempty"`
	LimitDownloadKiB int      `json:"limit_download_kib,omitempty"`
}

var dayNames = []string{"sun", "mon", "tue", "wed", "thu", "fri", "sat"}

// dayIndex returns the time.Weekday of a day name, or -1.
func dayIndex(name string) int {
	for i, d := range dayNames {
		if d == name {
			return i
		}
	}
	return -1
}

// clockMinutes parses "HH:MM" (00:00–23:59; "24:00" when end is set) into
// minutes since midnight.
func clockMinutes(s string, end bool) (int, error) {
	max := "23:59"
	if end {
		max = "24:00"
	}
	digit := func(i int) bool { return s[i] >= '0' && s[i] <= '9' }
	if len(s) != 5 || s[2] != ':' || !digit(0) || !digit(1) || !digit(3) || !digit(4) {
		return 0, fmt.Errorf("time %q is not HH:MM", s)
	}
	h, m := int(s[0]-'0')*10+int(s[1]-'0'), int(s[3]-'0')*10+int(s[4]-'0')
	if m > 59 || h > 24 || (h == 24 && (m != 0 || !end)) {
		return 0, fmt.Errorf("time %q is not between 00:00 and %s", s, max)
	}
	return h*60 + m, nil
}

// Validate checks one window and says what is wrong in an operator's terms.
func (w LimitWindow) Validate() error {
	seen := map[string]bool{}
	for _, d := range w.Days {
		if dayIndex(d) < 0 {
			return fmt.Errorf("day %q is not one of %s", d, strings.Join(dayNames, ", "))
		}
		if seen[d] {
			return fmt.Errorf("day %q named twice", d)
		}
		seen[d] = true
	}
	from, err := clockMinutes(w.From, false)
	if err != nil {
		return fmt.Errorf("from: %w", err)
	}
	to, err := clockMinutes(w.To, true)
	if err != nil {
		return fmt.Errorf("to: %w", err)
	}
	if from == to {
		return fmt.Errorf("from and to are both %s: the window would be empty (use 00:00 to 24:00 for the whole day)", w.From)
	}
	return wire.CheckLimits(w.LimitUploadKiB, w.LimitDownloadKiB)
}

// onDay reports whether the window starts on weekday d.
func (w LimitWindow) onDay(d time.Weekday) bool {
	if len(w.Days) == 0 {
		return true
	}
	for _, n := range w.Days {
		if dayIndex(n) == int(d) {
			return true
		}
	}
	return false
}

// covers reports whether the window holds the local time t.
func (w LimitWindow) covers(t time.Time) bool {
	from, err1 := clockMinutes(w.From, false)
	to, err2 := clockMinutes(w.To, true)
	if err1 != nil || err2 != nil {
		return false // Validate refuses such a window; never match it
	}
	m := t.Hour()*60 + t.Minute()
	if from < to {
		return w.onDay(t.Weekday()) && m >= from && m < to
	}
	// Overnight: the evening part belongs to the start day, the morning
	// part to the day after it.
	return (w.onDay(t.Weekday()) && m >= from) || (w.onDay((t.Weekday()+6)%7) && m < to)
}

// location is the schedule's time zone (UTC when empty or unknown:
// Validate refuses an unknown one).
func (s Schedule) location() *time.Location {
	if s.Timezone == "" {
		return time.UTC
	}
	loc, err := time.LoadLocation(s.Timezone)
	if err != nil {
		return time.UTC
	}
	return loc
}

// LimitsAt returns the bandwidth limits (KiB/s, 0 none) in force at t: the
// first of the schedule's windows that holds t (read in the schedule's time
// zone), else the schedule's own limits. Outside every window the
// schedule's own limits apply (0 = unlimited).
func (s Schedule) LimitsAt(t time.Time) (up, down int) {
	lt := t.In(s.location())
	for _, w := range s.LimitWindows {
		if w.covers(lt) {
			return w.LimitUploadKiB, w.LimitDownloadKiB
		}
	}
	return s.LimitUploadKiB, s.LimitDownloadKiB
}

// JobArgsAt is JobArgs for a fire scheduled at t: the limits are those in
// force at t (LimitsAt), so a fire in office hours runs throttled and one
// at night does not.
func (s Schedule) JobArgsAt(t time.Time) (json.RawMessage, error) {
	s.LimitUploadKiB, s.LimitDownloadKiB = s.LimitsAt(t)
	return s.JobArgs()
}

// validateWindows checks a schedule's windows (called by Validate).
func (s Schedule) validateWindows() error {
	if len(s.LimitWindows) == 0 {
		return nil
	}
	if s.Kind != wire.JobBackup && s.Kind != wire.JobCopy {
		return fmt.Errorf("limit_windows apply to backup and copy schedules only, not %s", s.Kind)
	}
	if len(s.LimitWindows) > MaxLimitWindows {
		return fmt.Errorf("%d limit windows; at most %d", len(s.LimitWindows), MaxLimitWindows)
	}
	for i, w := range s.LimitWindows {
		if err := w.Validate(); err != nil {
			return fmt.Errorf("limit window %d: %w", i+1, err)
		}
	}
	return nil
}
