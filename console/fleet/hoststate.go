package fleet

import (
	"fmt"
	"time"

	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Host states: the dashboard's counts and filter, the metrics' gauge and
// the MQTT health all read them from Assess, and the alert rules fire from
// its conditions, so they cannot disagree.
const (
	StateOK      = "ok"
	StateWarning = "warning"
	StateFailing = "failing"
	StateOffline = "offline"
)

// States in display order.
var States = []string{StateOK, StateWarning, StateFailing, StateOffline}

// The alert rules a host's state carries (alerts fires and resolves them).
const (
	RuleBackupStale     = "backup_stale"
	RuleHostOffline     = "host_offline"
	RuleScheduleApplied = "schedule_not_applied"
	// RuleRPOBreach: the last good backup is older than the RPO the
	// host's policies set (rpo.go); it takes backup_stale's place there.
	RuleRPOBreach = "rpo_breach"
)

// Severities of conditions and alerts.
const (
	SeverityWarning  = "warning"
	SeverityCritical = "critical"
)

// defaultStaleAfter applies to a host with no backup schedule that has
// backed up before (by hand): a day and two hours.
const defaultStaleAfter = 26 * time.Hour

// Condition is one thing wrong with a host now, named by its alert rule.
type Condition struct {
	Rule, Severity, Message string
}

// HostStatus is a host's state and why.
type HostStatus struct {
	State string
	// Conditions hold now; each is an alert that should be firing.
	Conditions []Condition
	// StaleAfter: no successful backup for this long is a breach (the
	// backup_stale condition, or rpo_breach under a policy's RPO; state
	// failing); 0 when the host is not judged (no backup schedule, no RPO
	// and never a success). WarnAfter: this long is late (state warning):
	// one schedule interval and a little.
	StaleAfter, WarnAfter time.Duration
	// AgeClass colours the last backup's age: age-ok, age-warn, age-bad or
	// age-none.
	AgeClass string
}

// staleThreshold is how long a host may go without a successful backup:
// the smallest RPO of its policies (rpo, 0 for none) if one sets it, else
// the override if set, else one schedule interval plus half of it (at least
// 30 minutes of slack), else a day and two hours. warn is when a backup is
// late: one interval plus a twelfth (at least 30 minutes: a daily backup is
// late after 26 hours), never after the threshold itself.
func staleThreshold(h storage.Host, hs storage.HostSchedules, now time.Time, rpo time.Duration) (limit, warn time.Duration, judged bool) {
	var longest time.Duration
	for _, s := range hs.Effective() {
		if !s.Enabled || s.Kind != wire.JobBackup {
			continue
		}
		runs, err := schedules.EntryNextRuns(h.ID, s.Entry(), now, 2)
		if err != nil || len(runs) < 2 {
			continue
		}
		longest = max(longest, runs[1].Sub(runs[0])+s.Jitter())
	}
	switch {
	case longest > 0:
		limit, warn, judged = longest+max(longest/2, 30*time.Minute), longest+max(longest/12, 30*time.Minute), true
	default:
		limit, judged = defaultStaleAfter, h.LastSuccess != nil
		warn = limit
	}
	if h.StaleAfter > 0 {
		limit, judged = h.StaleAfter, true
	}
	// A policy's RPO is a promise about the host's backups: it is the
	// breach, whatever the schedule or the override say.
	if rpo > 0 {
		if longest == 0 {
			warn = rpo
		}
		limit, judged = rpo, true
	}
	return limit, min(warn, limit), judged
}

// Assess is the one definition of a host's state, from its record and its
// schedules.
func (f *Fleet) Assess(h storage.Host, hs storage.HostSchedules, now time.Time) HostStatus {
	st := HostStatus{State: StateOK, AgeClass: "age-none"}
	if !h.Enrolled {
		st.State = StateOffline
		return st
	}
	worst := func(s string) {
		rank := map[string]int{StateOK: 0, StateWarning: 1, StateFailing: 2}
		if rank[s] > rank[st.State] {
			st.State = s
		}
	}
	rpo, firstDue, underRPO := f.rpoOf(h)
	limit, warn, judged := staleThreshold(h, hs, now, rpo)
	since := h.CreatedAt
	if !hs.UpdatedAt.IsZero() && hs.UpdatedAt.After(since) {
		since = hs.UpdatedAt
	}
	if underRPO {
		// Never backed up: the first backup is due by firstDue (the
		// compliance report says the same).
		since = firstDue.Add(-rpo)
	}
	if h.LastSuccess != nil {
		since = h.LastSuccess.EndedAt
	}
	age := now.Sub(since)
	if judged {
		st.StaleAfter, st.WarnAfter = limit, warn
		switch {
		case age > limit && underRPO:
			msg := fmt.Sprintf("last good backup of %s is %s old, past its policy's RPO of %s", h.Name, age.Round(time.Second), limit)
			if h.LastSuccess == nil {
				msg = fmt.Sprintf("%s has had no successful backup within its policy's RPO of %s", h.Name, limit)
			}
			st.Conditions = append(st.Conditions, Condition{RuleRPOBreach, SeverityCritical, msg})
			worst(StateFailing)
		case age > limit:
			msg := fmt.Sprintf("no successful backup of %s for %s (threshold %s)", h.Name, age.Round(time.Second), limit)
			if h.LastSuccess == nil {
				msg = fmt.Sprintf("%s has had no successful backup yet (threshold %s)", h.Name, limit)
			}
			st.Conditions = append(st.Conditions, Condition{RuleBackupStale, SeverityCritical, msg})
			worst(StateFailing)
		case age > warn && h.LastSuccess != nil:
			worst(StateWarning)
		}
	}
	if !h.Online && !h.LastSeen.IsZero() && now.Sub(h.LastSeen) > f.opts.OfflineAfter {
		st.Conditions = append(st.Conditions, Condition{RuleHostOffline, SeverityWarning,
			fmt.Sprintf("%s has been offline since %s", h.Name, h.LastSeen.Format(time.RFC3339))})
	}
	if SchedulePending(hs, h.Online, now) {
		st.Conditions = append(st.Conditions, Condition{RuleScheduleApplied, SeverityWarning,
			fmt.Sprintf("%s has not applied schedule version %d (applied %d)", h.Name, hs.Version, hs.AppliedVersion)})
		worst(StateWarning)
	}
	switch b := h.LastBackup; {
	case b != nil && (b.Status == storage.JobFailed || b.Status == storage.JobExpired):
		worst(StateFailing) // and job_failed fires critical for a backup
	case b != nil && (b.Status == storage.JobPartial || b.Status == storage.JobCancelled):
		worst(StateWarning)
	case h.LastSuccess == nil:
		worst(StateWarning) // never backed up
	}
	st.AgeClass = ageClass(h.LastBackup, judged, warn, limit, now)
	if !h.Online {
		st.State = StateOffline
	}
	return st
}

// ageClass colours the last backup's age against the host's thresholds
// (those of a daily schedule when the host is not judged).
func ageClass(b *storage.LastBackup, judged bool, warn, limit time.Duration, now time.Time) string {
	if b == nil {
		return "age-none"
	}
	if b.Status != storage.JobSucceeded && b.Status != storage.JobPartial {
		return "age-bad"
	}
	if !judged {
		warn, limit = 26*time.Hour, 36*time.Hour
	}
	switch age := now.Sub(b.EndedAt); {
	case age > limit:
		return "age-bad"
	case age > warn:
		return "age-warn"
	}
	return "age-ok"
}

// AssessHost reads the host's schedules and assesses it.
func (f *Fleet) AssessHost(h storage.Host, now time.Time) HostStatus {
	hs, _ := f.store.GetSchedules(h.ID)
	return f.Assess(h, hs, now)
}
