// Package schedules holds the schedule model shared by the console (which
// validates and publishes desired state) and the agent (which fires). It
// does no I/O of its own.
package schedules

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// parser accepts standard five-field expressions and descriptors such as
// @daily and @every 6h; seconds are deliberately not offered.
var parser = cron.NewParser(cron.Minute | cron.Hour | cron.Dom | cron.Month | cron.Dow | cron.Descriptor)

// ParseCron validates a cron expression in a time zone (IANA name; empty
// means UTC) and returns its schedule. Errors say what is wrong in words an
// operator can act on.
func ParseCron(expr, timezone string) (cron.Schedule, error) {
	expr = strings.TrimSpace(expr)
	if expr == "" {
		return nil, fmt.Errorf("cron expression is empty")
	}
	if strings.HasPrefix(expr, "TZ=") || strings.HasPrefix(expr, "CRON_TZ=") {
		return nil, fmt.Errorf("cron %q: give the time zone in the timezone field, not in the expression", expr)
	}
	loc := time.UTC
	if timezone != "" {
		var err error
		if loc, err = time.LoadLocation(timezone); err != nil {
			return nil, fmt.Errorf("time zone %q: %w", timezone, err)
		}
	}
	s, err := parser.Parse("CRON_TZ=" + loc.String() + " " + expr)
	if err != nil {
		return nil, fmt.Errorf("cron %q: %w", expr, err)
	}
	return s, nil
}

// NextRuns lists the next n run times after from (for previews).
func NextRuns(s cron.Schedule, from time.Time, n int) []time.Time {
	out := make([]time.Time, 0, n)
	t := from
	for range n {
		t = s.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// IsTick reports whether at is a time the cron expression produces. A
// constant-delay schedule ("@every 6h") has no fixed times: any time
// counts, and spacing is its delay (0 for a cron with fixed times), the
// least time between two of its fires.
func IsTick(expr, timezone string, at time.Time) (tick bool, spacing time.Duration, err error) {
	s, err := ParseCron(expr, timezone)
	if err != nil {
		return false, 0, err
	}
	if d, ok := s.(cron.ConstantDelaySchedule); ok {
		return true, d.Delay, nil
	}
	return s.Next(at.Add(-time.Nanosecond)).Equal(at), 0, nil
}
