package fleet

import (
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// Where a policy sets an RPO, a host whose last good backup is older
// breaches it: Assess gives it the rpo_breach condition (critical) in place
// of backup_stale, so one late backup is one alert, and the dashboard, the
// metrics and the compliance report (console/report) judge it the same.

// RPOFunc reports what the policies matching a host require of its
// backups (console wiring sets it from console/policy, which the fleet may
// not import). ok is false when no matching policy sets an RPO. rpo is the
// smallest RPO of the host's matching policies: a host whose last good
// backup is older breaches. firstDue is when a host that has never backed
// up breaches: the earliest, over those policies, of (the later of the
// host's and the policy's creation) plus the policy's RPO.
type RPOFunc func(h storage.Host) (rpo time.Duration, firstDue time.Time, ok bool)

// SetRPO sets how a host's RPO is found (nil: no host has one). Assess
// reads it for every host, so it must be cheap and safe for concurrent use.
func (f *Fleet) SetRPO(fn RPOFunc) { f.rpo.Store(&fn) }

// rpoOf is the host's RPO, if a policy sets one.
func (f *Fleet) rpoOf(h storage.Host) (time.Duration, time.Time, bool) {
	fn := f.rpo.Load()
	if fn == nil || *fn == nil {
		return 0, time.Time{}, false
	}
	rpo, due, ok := (*fn)(h)
	if !ok || rpo <= 0 {
		return 0, time.Time{}, false
	}
	return rpo, due, true
}
