package drills

import (
	"fmt"
	"time"

	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Interval is h's drill cadence: the shortest gap between two consecutive
// fires of its enabled drill schedules (its own and its policies'), 0 when
// it has none. The shortest, because each schedule promises its own
// cadence: a daily drill is overdue after two days even beside a monthly
// one.
func Interval(h storage.Host, hs storage.HostSchedules, now time.Time) time.Duration {
	var shortest time.Duration
	for _, s := range hs.Effective() {
		if !s.Enabled || s.Kind != wire.JobDrill {
			continue
		}
		runs, err := schedules.EntryNextRuns(h.ID, s.Entry(), now, 2)
		if err != nil || len(runs) < 2 {
			continue
		}
		if gap := runs[1].Sub(runs[0]); gap > 0 && (shortest == 0 || gap < shortest) {
			shortest = gap
		}
	}
	return shortest
}

// Overdue reports whether h, having a drill cadence, has had no
// successful drill within twice its interval, with the alert's message.
// Twice: one missed drill (the host was off that night) is not yet an
// alert, two are. A host never proven counts from its creation or the
// last change of its schedules, whichever is later (when the cadence may
// have begun).
func Overdue(h storage.Host, hs storage.HostSchedules, now time.Time) (string, bool) {
	if !h.Enrolled {
		return "", false
	}
	every := Interval(h, hs, now)
	if every == 0 {
		return "", false
	}
	limit := 2 * every
	since := h.CreatedAt
	if hs.UpdatedAt.After(since) {
		since = hs.UpdatedAt
	}
	if !h.ProvenRestorableAt.IsZero() {
		since = h.ProvenRestorableAt
	}
	if now.Sub(since) <= limit {
		return "", false
	}
	if h.ProvenRestorableAt.IsZero() {
		return fmt.Sprintf("%s has never been proven restorable by a drill (drills every %s; overdue after %s)", name(h), every, limit), true
	}
	return fmt.Sprintf("%s was last proven restorable %s ago (%s), past twice its drill interval of %s",
		name(h), now.Sub(since).Round(time.Minute), since.UTC().Format(time.RFC3339), every), true
}
