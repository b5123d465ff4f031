package console

import (
	"context"
	"encoding/json"
	"fmt"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/notify"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Alert rules.
const (
	RuleJobFailed       = "job_failed"
	RuleBackupStale     = "backup_stale"
	RuleHostOffline     = "host_offline"
	RuleCheckErrors     = "check_errors"
	RuleLockAge         = "lock_age"
	RuleScheduleApplied = "schedule_not_applied"
)

// Defaults of the rules, overridable through Options.
const (
	defaultAlertInterval = 30 * time.Second
	defaultRenotify      = 4 * time.Hour
	defaultOfflineAfter  = time.Hour
	defaultStaleAfter    = 26 * time.Hour // a host with no backup schedule
	lockAgeLimit         = 2 * time.Hour
)

// alertState keeps what was last published per host, so health messages
// go out only when they change.
type alertState struct {
	mu         sync.Mutex
	lastHealth map[string]string
}

func alertID(rule, subject string) string { return rule + "." + subject }

// ignoredKinds do not raise job_failed: they are the console's own probes.
var ignoredKinds = map[string]bool{wire.JobHealth: true, wire.JobIndex: true, wire.JobLs: true, wire.JobLocks: true}

// jobAlert fires or resolves job_failed for the job's (host, kind). A
// redelivered result never gets here twice (ingestResult stops at the
// first), so a failure alerts once.
func (c *Console) jobAlert(j storage.Job) {
	if ignoredKinds[j.Kind] || j.ActorKind == "system" {
		return
	}
	subject := j.HostID + "." + j.Kind
	switch j.Status {
	case storage.JobFailed:
		msg := fmt.Sprintf("%s job %s failed", j.Kind, j.ID)
		if j.Error != "" {
			msg += ": " + j.Error
		}
		c.fire(RuleJobFailed, subject, "warning", j.HostID, j.RepoID, msg)
	case storage.JobSucceeded, storage.JobPartial:
		c.resolve(RuleJobFailed, subject)
	}
}

// evaluateAlerts runs the periodic rules over every host and repository.
func (c *Console) evaluateAlerts(ctx context.Context) {
	now := time.Now()
	c.eachHost(ctx, func(h storage.Host) { c.evaluateHost(h, now) })
	repos, err := c.store.ListRepos()
	if err != nil {
		return
	}
	for _, r := range repos {
		c.evaluateRepo(r)
	}
}

// staleThreshold is how long a host may go without a successful backup: the
// override if set, else one schedule interval plus half of it (at least 30
// minutes of slack), else a day and two hours.
func staleThreshold(h storage.Host, hs storage.HostSchedules, now time.Time) (time.Duration, bool) {
	if h.StaleAfter > 0 {
		return h.StaleAfter, true
	}
	var longest time.Duration
	for _, s := range hs.Schedules {
		if !s.Enabled || s.Kind != wire.JobBackup {
			continue
		}
		runs, err := schedules.EntryNextRuns(h.ID, s.Entry(), now, 2)
		if err != nil || len(runs) < 2 {
			continue
		}
		longest = max(longest, runs[1].Sub(runs[0])+s.Jitter())
	}
	if longest == 0 {
		return defaultStaleAfter, h.LastSuccess != nil
	}
	return longest + max(longest/2, 30*time.Minute), true
}

func (c *Console) evaluateHost(h storage.Host, now time.Time) {
	if !h.Enrolled {
		return
	}
	hs, _ := c.store.GetSchedules(h.ID)
	// Read the host's alerts once: a rule that is not firing needs no
	// resolve (which would read its alert again), and when nothing fired
	// or resolved the health below is derived from this same read.
	before := c.hostAlerts(h.ID)
	firing := make(map[string]bool, len(before))
	for _, a := range before {
		firing[a.ID] = true
	}
	touched := false
	raise := func(rule, severity, msg string) {
		touched = true
		c.fire(rule, h.ID, severity, h.ID, "", msg)
	}
	settle := func(rule string) {
		if firing[alertID(rule, h.ID)] {
			touched = true
			c.resolve(rule, h.ID)
		}
	}
	// Stale backups.
	if limit, ok := staleThreshold(h, hs, now); ok {
		since := h.CreatedAt
		if !hs.UpdatedAt.IsZero() && hs.UpdatedAt.After(since) {
			since = hs.UpdatedAt
		}
		if h.LastSuccess != nil {
			since = h.LastSuccess.EndedAt
		}
		if now.Sub(since) > limit {
			msg := fmt.Sprintf("no successful backup of %s for %s (threshold %s)", h.Name, now.Sub(since).Round(time.Second), limit)
			if h.LastSuccess == nil {
				msg = fmt.Sprintf("%s has had no successful backup yet (threshold %s)", h.Name, limit)
			}
			raise(RuleBackupStale, "critical", msg)
		} else {
			settle(RuleBackupStale)
		}
	}
	// Offline for long.
	if !h.Online && !h.LastSeen.IsZero() && now.Sub(h.LastSeen) > c.opts.OfflineAfter {
		raise(RuleHostOffline, "warning", fmt.Sprintf("%s has been offline since %s", h.Name, h.LastSeen.Format(time.RFC3339)))
	} else {
		settle(RuleHostOffline)
	}
	// Schedule version not applied.
	if schedulePending(hs, h.Online, now) {
		raise(RuleScheduleApplied, "warning", fmt.Sprintf("%s has not applied schedule version %d (applied %d)", h.Name, hs.Version, hs.AppliedVersion))
	} else {
		settle(RuleScheduleApplied)
	}
	if touched {
		c.publishHealth(h)
	} else {
		c.publishHealthOf(h, before)
	}
}

func (c *Console) evaluateRepo(r storage.Repo) {
	if r.Health == nil {
		return
	}
	if lc := r.Health.LastCheck; lc != nil && !lc.OK {
		c.fire(RuleCheckErrors, r.ID, "critical", "", r.ID, fmt.Sprintf("check of %s found %d errors (job %s)", r.Name, lc.Errors, lc.JobID))
	} else {
		c.resolve(RuleCheckErrors, r.ID)
	}
	l := r.Health.Locks
	if l.Stale > 0 || time.Duration(l.OldestAgeS*float64(time.Second)) > lockAgeLimit {
		c.fire(RuleLockAge, r.ID, "warning", "", r.ID, fmt.Sprintf("%s has %d locks, %d stale, the oldest %s old: backups may be blocked; run unlock",
			r.Name, l.Count, l.Stale, time.Duration(l.OldestAgeS*float64(time.Second)).Round(time.Second)))
	} else {
		c.resolve(RuleLockAge, r.ID)
	}
}

// fire records a firing alert and notifies when it is new, or when it has
// been firing for the re-notification interval without acknowledgement.
func (c *Console) fire(rule, subject, severity, hostID, repoID, msg string) {
	now := time.Now().UTC()
	notifyNow := false
	a, err := c.store.UpdateAlert(alertID(rule, subject), func(a *storage.Alert, exists bool) error {
		if a.State == storage.AlertFiring {
			a.Message = msg
			if a.AckedBy == "" && now.After(a.SilencedUntil) && now.Sub(a.LastNotified) >= c.opts.RenotifyEvery {
				a.LastNotified, notifyNow = now, true
			}
			return nil
		}
		*a = storage.Alert{Rule: rule, Subject: subject, HostID: hostID, RepoID: repoID, Severity: severity,
			State: storage.AlertFiring, Since: now, Message: msg, LastNotified: now, SilencedUntil: a.SilencedUntil}
		notifyNow = now.After(a.SilencedUntil)
		return nil
	})
	if err != nil {
		c.log.Error("alert not stored", "rule", rule, "subject", subject, "error", err)
		return
	}
	if notifyNow {
		c.log.Warn("alert firing", "alert_id", a.ID, "severity", a.Severity, "message", a.Message)
		c.notifyAll(a, "firing")
		c.publishAlert(a)
	}
}

// resolve ends a firing alert and sends one resolved notification.
func (c *Console) resolve(rule, subject string) {
	id := alertID(rule, subject)
	if _, err := c.store.GetAlert(id); err != nil {
		return // never fired
	}
	changed := false
	a, err := c.store.UpdateAlert(id, func(a *storage.Alert, exists bool) error {
		if !exists || a.State != storage.AlertFiring {
			return errNoChange
		}
		a.State, a.ResolvedAt, changed = storage.AlertResolved, time.Now().UTC(), true
		a.AckedBy, a.AckedAt = "", time.Time{}
		return nil
	})
	if err != nil || !changed {
		return
	}
	c.log.Info("alert resolved", "alert_id", a.ID)
	c.record(storage.AuditEntry{Actor: "console", Kind: "alert", Action: "alert resolved", Target: a.ID})
	c.notifyAll(a, "resolved")
	c.publishAlert(a)
	if a.HostID != "" {
		if h, err := c.store.GetHost(a.HostID); err == nil {
			c.publishHealth(h)
		}
	}
}

// notifyAll sends to every channel whose routing wants the alert, in the
// background (a slow SMTP server must not hold up ingest).
func (c *Console) notifyAll(a storage.Alert, event string) {
	chans, err := c.store.ListChannels()
	if err != nil || len(chans) == 0 {
		return
	}
	sev, _ := notify.ParseSeverity(a.Severity)
	hostName := a.HostID
	if h, err := c.store.GetHost(a.HostID); err == nil {
		hostName = h.Name
	}
	msg := notify.Message{Event: event, AlertID: a.ID, Rule: a.Rule, HostID: a.HostID, HostName: hostName, Severity: sev,
		Title: fmt.Sprintf("[%s] %s: %s", strings.ToUpper(event), a.Rule, hostName), Text: a.Message, Since: a.Since,
		URL: strings.TrimRight(c.opts.PublicURL, "/")}
	for _, ch := range chans {
		c.goBG(func(ctx context.Context) {
			if err := c.sendTo(ctx, ch, msg); err != nil {
				c.log.Warn("notification failed", "channel", ch.Name, "alert_id", a.ID, "error", err)
			}
		})
	}
}

// sendTo delivers one message through one channel, honouring its routing.
func (c *Console) sendTo(ctx context.Context, ch storage.Channel, msg notify.Message) error {
	raw, err := c.store.ChannelConfig(ch.ID)
	if err != nil {
		return err
	}
	var cfg notify.Config
	if err := json.Unmarshal(raw, &cfg); err != nil {
		return err
	}
	if msg.Event != "test" && !notify.Wants(cfg, msg.Severity) {
		return nil
	}
	s, err := notify.New(cfg)
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return s.Send(ctx, msg)
}

// alertLoop evaluates the periodic rules.
func (c *Console) alertLoop(ctx context.Context) {
	t := time.NewTicker(c.opts.AlertInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			c.evaluateAlerts(ctx)
		}
	}
}

// hostHealth is the retained hosts/{host}/health payload.
type hostHealth struct {
	V           int        `json:"v"`
	Status      string     `json:"status"` // ok, warning, critical
	LastSuccess *time.Time `json:"last_success"`
	LastStatus  string     `json:"last_status,omitempty"`
	AgeS        *int64     `json:"last_backup_age_s"`
	RepoBytes   uint64     `json:"repository_size_bytes,omitempty"`
	Why         []string   `json:"why"`
	Online      bool       `json:"online"`
}

// hostAlertIDs are the IDs every alert about host h can have: the host
// rules have the host as subject, job_failed has host.kind.
func hostAlertIDs(hostID string) []string {
	ids := []string{alertID(RuleBackupStale, hostID), alertID(RuleHostOffline, hostID), alertID(RuleScheduleApplied, hostID)}
	for kind := range supportedKinds {
		if !ignoredKinds[kind] {
			ids = append(ids, alertID(RuleJobFailed, hostID+"."+kind))
		}
	}
	return ids
}

// hostAlerts returns the host's firing alerts, sorted by ID. They are
// looked up by their possible IDs: listing every alert for each host made
// the periodic evaluation (and each job's end) cost O(alerts) per host,
// O(hosts × alerts) per round, with a large fleet.
func (c *Console) hostAlerts(hostID string) []storage.Alert {
	all, err := c.store.GetAlerts(hostAlertIDs(hostID))
	if err != nil {
		c.log.Warn("host alerts not read", "host_id", hostID, "error", err)
		return nil
	}
	alerts := all[:0]
	for _, a := range all {
		if a.State == storage.AlertFiring && a.HostID == hostID {
			alerts = append(alerts, a)
		}
	}
	sort.Slice(alerts, func(i, j int) bool { return alerts[i].ID < alerts[j].ID })
	return alerts
}

// healthOf derives a host's health from its firing alerts (sorted by ID).
func (c *Console) healthOf(h storage.Host, alerts []storage.Alert) hostHealth {
	out := hostHealth{V: 1, Status: "ok", Why: []string{}, Online: h.Online}
	for _, a := range alerts {
		out.Why = append(out.Why, a.Message)
		if a.Severity == "critical" || out.Status == "ok" {
			out.Status = a.Severity
		}
	}
	if h.LastSuccess != nil {
		t := h.LastSuccess.EndedAt
		age := int64(time.Since(t) / time.Second)
		out.LastSuccess, out.AgeS = &t, &age
	}
	if h.LastBackup != nil {
		out.LastStatus = h.LastBackup.Status
		if rp, err := c.store.GetRepo(c.lastRepoOf(h)); err == nil && rp.Health != nil {
			out.RepoBytes = rp.Health.SizeBytes
		}
	}
	return out
}

// lastRepoOf is the repository of the host's last backup.
func (c *Console) lastRepoOf(h storage.Host) string {
	if h.LastBackup == nil {
		return ""
	}
	j, err := c.store.GetJob(h.LastBackup.JobID)
	if err != nil {
		return ""
	}
	return j.RepoID
}

// publishHealth sends the retained health of a host when it changed.
func (c *Console) publishHealth(h storage.Host) {
	c.publishHealthOf(h, c.hostAlerts(h.ID))
}

// publishHealthOf is publishHealth with the host's firing alerts read.
func (c *Console) publishHealthOf(h storage.Host, alerts []storage.Alert) {
	hh := c.healthOf(h, alerts)
	b, err := json.Marshal(hh)
	if err != nil {
		return
	}
	// The age changes every evaluation; compare without it.
	key := hh.Status + "|" + strings.Join(hh.Why, "|") + "|" + hh.LastStatus + fmt.Sprint(hh.LastSuccess, hh.RepoBytes, hh.Online)
	c.alertState.mu.Lock()
	if c.alertState.lastHealth == nil {
		c.alertState.lastHealth = map[string]string{}
	}
	same := c.alertState.lastHealth[h.ID] == key
	c.alertState.lastHealth[h.ID] = key
	c.alertState.mu.Unlock()
	if same {
		return
	}
	if err := c.pub.Publish(wire.HealthTopic(h.ID), b, true, 0); err != nil {
		c.log.Warn("health not published", "host_id", h.ID, "error", err)
	}
}

// publishAlert keeps restic-manager/v1/alerts/{id} retained while the alert
// fires and clears it when it resolves.
func (c *Console) publishAlert(a storage.Alert) {
	var b []byte
	if a.State == storage.AlertFiring {
		b, _ = json.Marshal(map[string]any{"v": 1, "id": a.ID, "rule": a.Rule, "host_id": a.HostID, "repo_id": a.RepoID,
			"severity": a.Severity, "state": a.State, "since": a.Since, "message": a.Message})
	}
	if err := c.pub.Publish(wire.AlertTopic(a.ID), b, true, 0); err != nil {
		c.log.Warn("alert not published", "alert_id", a.ID, "error", err)
	}
}
