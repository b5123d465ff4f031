// Package alerts turns the fleet's state into alerts: the rules, the
// firing/resolved lifecycle with re-notification, the notification
// channels, the retained MQTT health and alert topics, and Home Assistant
// discovery. It observes the fleet (the end of every job, and a periodic
// evaluation of every host's state from fleet.Assess); it never changes a
// job.
package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/drills"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/loop"
	"github.com/restic-manager/restic-manager/notify"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Alert rules: the host rules come from the host's state (fleet.Assess).
const (
	RuleJobFailed       = "job_failed"
	RuleBackupStale     = fleet.RuleBackupStale
	RuleHostOffline     = fleet.RuleHostOffline
	RuleScheduleApplied = fleet.RuleScheduleApplied
	RuleRPOBreach       = fleet.RuleRPOBreach
	RuleCheckErrors     = "check_errors"
	RuleLockAge         = "lock_age"
	// RuleForgetHeld: a forget's guard stopped it (subject: the job).
	RuleForgetHeld = "forget_held"
	// RuleDrillFailed: the last restore drill of the host's backup failed
	// (subject: the proven host); its next successful drill resolves it.
	RuleDrillFailed = "drill_failed"
	// RuleDrillOverdue: a host with a drill cadence has had no successful
	// drill within twice its interval (console/drills.Overdue).
	RuleDrillOverdue = "drill_overdue"
	// RuleCopyLag: more snapshots of a repository are missing in a copy
	// destination than the policies' copy_lag_max (subject: source and
	// destination); resolved when the lag falls to it.
	RuleCopyLag = "copy_lag"
)

// hostRules are the rules evaluated per host from its state (and its
// drills' cadence).
var hostRules = []string{RuleBackupStale, RuleHostOffline, RuleScheduleApplied, RuleRPOBreach, RuleDrillOverdue}

// Defaults of the rules, overridable through Options.
const (
	defaultAlertInterval = 30 * time.Second
	defaultRenotify      = 4 * time.Hour
	lockAgeLimit         = 2 * time.Hour
)

// Options configure the alerts.
type Options struct {
	Fleet  *fleet.Fleet
	Logger *slog.Logger
	// PublicURL links notifications to the console.
	PublicURL string
	// Interval is how often the periodic rules run (default 30s);
	// RenotifyEvery repeats a firing, unacknowledged alert (default 4h).
	Interval, RenotifyEvery time.Duration
	// Audit records resolutions in the audit log.
	Audit func(storage.AuditEntry)
	// Now is the periodic rules' clock (default time.Now): tests move it
	// to see a drill fall overdue.
	Now func() time.Time
}

// Alerts owns the alert lifecycle.
type Alerts struct {
	opts  Options
	f     *fleet.Fleet
	store *storage.Store
	pub   fleet.Publisher
	log   *slog.Logger
	state alertState
	// births debounces Home Assistant's birth messages (integrations.go).
	births haBirths

	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

// New starts the alerts: the periodic evaluation, and an observer of every
// job's end (job_failed and the host's MQTT health).
func New(opts Options) *Alerts {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.Interval == 0 {
		opts.Interval = defaultAlertInterval
	}
	if opts.RenotifyEvery == 0 {
		opts.RenotifyEvery = defaultRenotify
	}
	if opts.Audit == nil {
		opts.Audit = func(storage.AuditEntry) {}
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	al := &Alerts{opts: opts, f: opts.Fleet, store: opts.Fleet.Store(), pub: opts.Fleet.Publisher(),
		log: opts.Logger.With("component", "alerts")}
	al.bgCtx, al.bgCancel = context.WithCancel(context.Background())
	opts.Fleet.OnJobEnd(al.jobEnded)
	opts.Fleet.OnJobHeld(func(j storage.Job) {
		al.fire(RuleForgetHeld, j.ID, fleet.SeverityCritical, "", j.RepoID,
			fmt.Sprintf("forget job %s on repository %s is held for an admin's approval: %s", j.ID, j.RepoID, j.Error))
	})
	opts.Fleet.OnJobApproved(func(j storage.Job) { al.resolve(RuleForgetHeld, j.ID) })
	al.goBG(al.alertLoop)
	return al
}

// Close stops the evaluation and waits for notifications in flight.
func (al *Alerts) Close() {
	al.bgCancel()
	al.bg.Wait()
}

func (al *Alerts) goBG(fn func(ctx context.Context)) {
	al.bg.Add(1)
	go func() {
		defer al.bg.Done()
		fn(al.bgCtx)
	}()
}

// alertState keeps what was last published per host, so health messages
// go out only when they change.
type alertState struct {
	mu         sync.Mutex
	lastHealth map[string]string
}

func alertID(rule, subject string) string { return rule + "." + subject }

// alerting reports whether a kind's failures raise job_failed: the
// console's own probes do not.
func alerting(kind string) bool {
	k, ok := wire.LookupKind(kind)
	return ok && !k.Probe
}

// jobEnded is the alerts' observer of a job's end.
func (al *Alerts) jobEnded(j storage.Job) {
	if j.Kind == wire.JobForget {
		al.resolve(RuleForgetHeld, j.ID) // cancelled while held, or ended after approval
	}
	if o, ok := drills.Of(j); ok {
		al.drillAlert(o)
		if !o.OK {
			return // drill_failed says it, on the host the drill proves
		}
	}
	al.jobAlert(j)
	if h, err := al.store.GetHost(j.HostID); err == nil {
		al.publishHealth(h)
	}
}

// drillAlert fires drill_failed on the host a drill proves, or resolves
// it and drill_overdue when the drill succeeded.
func (al *Alerts) drillAlert(o drills.Outcome) {
	h, err := al.store.GetHost(o.HostID)
	if err != nil {
		return // deleted meanwhile
	}
	if o.OK {
		al.resolve(RuleDrillFailed, h.ID)
		al.resolve(RuleDrillOverdue, h.ID)
	} else {
		al.fire(RuleDrillFailed, h.ID, fleet.SeverityCritical, h.ID, o.RepoID, drills.FailureMessage(o, h.Name))
	}
	al.publishHealth(h)
}

// jobAlert fires or resolves job_failed for the job's (host, kind). A
// redelivered result never gets here twice (the fleet ends a job once), so
// a failure alerts once. An expired job did not run at all: it alerts like
// a failure. A failed backup is critical (the host's state is failing).
func (al *Alerts) jobAlert(j storage.Job) {
	if !alerting(j.Kind) || j.ActorKind == "system" {
		return
	}
	subject := j.HostID + "." + j.Kind
	switch j.Status {
	case storage.JobFailed, storage.JobExpired:
		msg := fmt.Sprintf("%s job %s %s", j.Kind, j.ID, j.Status)
		if j.Error != "" {
			msg += ": " + j.Error
		}
		severity := fleet.SeverityWarning
		if j.Kind == wire.JobBackup {
			severity = fleet.SeverityCritical
		}
		al.fire(RuleJobFailed, subject, severity, j.HostID, j.RepoID, msg)
	case storage.JobSucceeded, storage.JobPartial:
		al.resolve(RuleJobFailed, subject)
	}
}

// evaluateAlerts runs the periodic rules over every host and repository.
func (al *Alerts) evaluateAlerts(ctx context.Context) {
	now := al.opts.Now()
	al.f.EachHost(ctx, func(h storage.Host) { al.evaluateHost(h, now) })
	al.evaluateTokens(now)
	repos, err := al.store.ListRepos()
	if err != nil {
		return
	}
	for _, r := range repos {
		al.evaluateRepo(r)
	}
}

// evaluateHost fires and resolves the host rules from the host's state:
// the alerts say what Assess says, and the dashboard shows the same.
func (al *Alerts) evaluateHost(h storage.Host, now time.Time) {
	if !h.Enrolled {
		return
	}
	hs, _ := al.store.GetSchedules(h.ID) // read once: the state and the drill cadence
	st := al.f.Assess(h, hs, now)
	// Read the host's alerts once: a rule that is not firing needs no
	// resolve (which would read its alert again), and when nothing fired
	// or resolved the health below is derived from this same read.
	before := al.hostAlerts(h.ID)
	firing := make(map[string]bool, len(before))
	for _, a := range before {
		firing[a.ID] = true
	}
	touched := false
	holds := map[string]bool{}
	conds := st.Conditions
	if msg, over := drills.Overdue(h, hs, now); over {
		conds = append(conds, fleet.Condition{Rule: RuleDrillOverdue, Severity: fleet.SeverityWarning, Message: msg})
	}
	for _, c := range conds {
		holds[c.Rule] = true
		touched = true
		al.fire(c.Rule, h.ID, c.Severity, h.ID, "", c.Message)
	}
	for _, rule := range hostRules {
		if !holds[rule] && firing[alertID(rule, h.ID)] {
			touched = true
			al.resolve(rule, h.ID)
		}
	}
	if touched {
		before = al.hostAlerts(h.ID)
	}
	al.publishHealthOf(h, st.State, before)
}

func (al *Alerts) evaluateRepo(r storage.Repo) {
	if r.Health == nil {
		return
	}
	if lc := r.Health.LastCheck; lc != nil && !lc.OK {
		al.fire(RuleCheckErrors, r.ID, "critical", "", r.ID, fmt.Sprintf("check of %s found %d errors (job %s)", r.Name, lc.Errors, lc.JobID))
	} else {
		al.resolve(RuleCheckErrors, r.ID)
	}
	l := r.Health.Locks
	if l.Stale > 0 || time.Duration(l.OldestAgeS*float64(time.Second)) > lockAgeLimit {
		al.fire(RuleLockAge, r.ID, "warning", "", r.ID, fmt.Sprintf("%s has %d locks, %d stale, the oldest %s old: backups may be blocked; run unlock",
			r.Name, l.Count, l.Stale, time.Duration(l.OldestAgeS*float64(time.Second)).Round(time.Second)))
	} else {
		al.resolve(RuleLockAge, r.ID)
	}
	for _, l := range r.Health.CopyLag {
		subject := r.ID + "." + l.ToRepoID
		if l.Max > 0 && l.MissingSnapshots > l.Max {
			al.fire(RuleCopyLag, subject, "warning", "", r.ID, fmt.Sprintf("%d snapshots of %s are not copied to %s yet (at most %d allowed)",
				l.MissingSnapshots, r.Name, l.ToRepoID, l.Max))
		} else {
			al.resolve(RuleCopyLag, subject)
		}
	}
}

// fire records a firing alert and notifies when it is new, or when it has
// been firing for the re-notification interval without acknowledgement.
func (al *Alerts) fire(rule, subject, severity, hostID, repoID, msg string) {
	now := time.Now().UTC()
	notifyNow := false
	a, err := al.store.UpdateAlert(alertID(rule, subject), func(a *storage.Alert, exists bool) error {
		if a.State == storage.AlertFiring {
			a.Message = msg
			if a.AckedBy == "" && now.After(a.SilencedUntil) && now.Sub(a.LastNotified) >= al.opts.RenotifyEvery {
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
		al.log.Error("alert not stored", "rule", rule, "subject", subject, "error", err)
		return
	}
	if notifyNow {
		al.log.Warn("alert firing", "alert_id", a.ID, "severity", a.Severity, "message", a.Message)
		al.notifyAll(a, "firing")
		al.publishAlert(a)
	}
}

// resolve ends a firing alert and sends one resolved notification.
func (al *Alerts) resolve(rule, subject string) {
	id := alertID(rule, subject)
	if _, err := al.store.GetAlert(id); err != nil {
		return // never fired
	}
	changed := false
	a, err := al.store.UpdateAlert(id, func(a *storage.Alert, exists bool) error {
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
	al.log.Info("alert resolved", "alert_id", a.ID)
	al.opts.Audit(storage.AuditEntry{Actor: "console", Kind: "alert", Action: "alert resolved", Target: a.ID})
	al.notifyAll(a, "resolved")
	al.publishAlert(a)
	if a.HostID != "" {
		if h, err := al.store.GetHost(a.HostID); err == nil {
			al.publishHealth(h)
		}
	}
}

// notifyAll sends to every channel whose routing wants the alert, in the
// background (a slow SMTP server must not hold up ingest).
func (al *Alerts) notifyAll(a storage.Alert, event string) {
	chans, err := al.store.ListChannels()
	if err != nil || len(chans) == 0 {
		return
	}
	sev, _ := notify.ParseSeverity(a.Severity)
	hostName := a.HostID
	if h, err := al.store.GetHost(a.HostID); err == nil {
		hostName = h.Name
	}
	msg := notify.Message{Event: event, AlertID: a.ID, Rule: a.Rule, HostID: a.HostID, HostName: hostName, Severity: sev,
		Title: fmt.Sprintf("[%s] %s: %s", strings.ToUpper(event), a.Rule, hostName), Text: a.Message, Since: a.Since,
		URL: strings.TrimRight(al.opts.PublicURL, "/")}
	for _, ch := range chans {
		al.goBG(func(ctx context.Context) {
			if err := al.sendTo(ctx, ch, msg); err != nil {
				al.log.Warn("notification failed", "channel", ch.Name, "alert_id", a.ID, "error", err)
			}
		})
	}
}

// sendTo delivers one message through one channel, honouring its routing.
func (al *Alerts) sendTo(ctx context.Context, ch storage.Channel, msg notify.Message) error {
	raw, err := al.store.ChannelConfig(ch.ID)
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
	err = s.Send(ctx, msg)
	al.recordDelivery(ch.ID, msg.Event, err)
	return err
}

// alertLoop evaluates the periodic rules.
func (al *Alerts) alertLoop(ctx context.Context) {
	loop.Every(ctx, al.opts.Interval, al.opts.Interval, al.evaluateAlerts)
}

// hostHealth is the retained hosts/{host}/health payload.
type hostHealth struct {
	V      int    `json:"v"`
	Status string `json:"status"` // ok, warning, critical: from the firing alerts
	// State is the host's state as the dashboard shows it (fleet.Assess):
	// ok, warning, failing or offline.
	State       string     `json:"state"`
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
	ids := make([]string, 0, len(hostRules)+1+len(wire.Kinds()))
	for _, rule := range hostRules {
		ids = append(ids, alertID(rule, hostID))
	}
	ids = append(ids, alertID(RuleDrillFailed, hostID))
	for _, k := range wire.Kinds() {
		if alerting(k.Name) {
			ids = append(ids, alertID(RuleJobFailed, hostID+"."+k.Name))
		}
	}
	return ids
}

// hostAlerts returns the host's firing alerts, sorted by ID. They are
// looked up by their possible IDs: listing every alert for each host made
// the periodic evaluation (and each job's end) cost O(alerts) per host,
// O(hosts × alerts) per round, with a large fleet.
func (al *Alerts) hostAlerts(hostID string) []storage.Alert {
	all, err := al.store.GetAlerts(hostAlertIDs(hostID))
	if err != nil {
		al.log.Warn("host alerts not read", "host_id", hostID, "error", err)
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
func (al *Alerts) healthOf(h storage.Host, alerts []storage.Alert) hostHealth {
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
		if rp, err := al.store.GetRepo(al.lastRepoOf(h)); err == nil && rp.Health != nil {
			out.RepoBytes = rp.Health.SizeBytes
		}
	}
	return out
}

// lastRepoOf is the repository of the host's last backup.
func (al *Alerts) lastRepoOf(h storage.Host) string {
	if h.LastBackup == nil {
		return ""
	}
	j, err := al.store.GetJob(h.LastBackup.JobID)
	if err != nil {
		return ""
	}
	return j.RepoID
}

// publishHealth sends the retained health of a host when it changed.
func (al *Alerts) publishHealth(h storage.Host) {
	al.publishHealthOf(h, al.f.AssessHost(h, time.Now()).State, al.hostAlerts(h.ID))
}

// publishHealthOf is publishHealth with the host's state and firing alerts
// read.
func (al *Alerts) publishHealthOf(h storage.Host, state string, alerts []storage.Alert) {
	hh := al.healthOf(h, alerts)
	hh.State = state
	b, err := json.Marshal(hh)
	if err != nil {
		return
	}
	// The age changes every evaluation; compare without it.
	key := hh.Status + "|" + hh.State + "|" + strings.Join(hh.Why, "|") + "|" + hh.LastStatus + fmt.Sprint(hh.LastSuccess, hh.RepoBytes, hh.Online)
	al.state.mu.Lock()
	if al.state.lastHealth == nil {
		al.state.lastHealth = map[string]string{}
	}
	same := al.state.lastHealth[h.ID] == key
	al.state.lastHealth[h.ID] = key
	al.state.mu.Unlock()
	if same {
		return
	}
	if err := al.pub.Publish(wire.HealthTopic(h.ID), b, true, 0); err != nil {
		al.log.Warn("health not published", "host_id", h.ID, "error", err)
	}
}

// publishAlert keeps restic-manager/v1/alerts/{id} retained while the alert
// fires and clears it when it resolves.
func (al *Alerts) publishAlert(a storage.Alert) {
	var b []byte
	if a.State == storage.AlertFiring {
		b, _ = json.Marshal(map[string]any{"v": 1, "id": a.ID, "rule": a.Rule, "host_id": a.HostID, "repo_id": a.RepoID,
			"severity": a.Severity, "state": a.State, "since": a.Since, "message": a.Message})
	}
	if err := al.pub.Publish(wire.AlertTopic(a.ID), b, true, 0); err != nil {
		al.log.Warn("alert not published", "alert_id", a.ID, "error", err)
	}
}

// errNoChange ends a store update function without writing.
var errNoChange = errors.New("no change")
