package schedules

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/robfig/cron/v3"

	"github.com/restic-manager/restic-manager/wire"
)

// Clock is the scheduler's source of time; tests drive it by hand.
type Clock interface {
	Now() time.Time
	// After behaves like time.After.
	After(d time.Duration) <-chan time.Time
}

// RealClock is the wall clock.
type RealClock struct{}

func (RealClock) Now() time.Time                         { return time.Now() }
func (RealClock) After(d time.Duration) <-chan time.Time { return time.After(d) }

// Sink receives what the scheduler produces. Both calls must be durable
// before they return (the agent puts them in its outbox).
type Sink interface {
	Fire(wire.Fire) error
	Report(wire.SchedulesReported) error
}

// FireLog remembers, per schedule, the last window that fired and the
// expression it was computed from. It must survive restarts: it is what lets
// a schedule whose window passed while the agent was down fire once.
type FireLog interface {
	Last(scheduleID string) (at time.Time, spec string, ok bool)
	Set(scheduleID string, at time.Time, spec string) error
}

// maxWindows bounds the walk over missed windows (an "@every 1m" schedule
// down for two months is ~90,000 windows).
const maxWindows = 200_000

// sinkRetry is how long a schedule waits after its fire could not be queued.
const sinkRetry = 5 * time.Second

// catchUpTolerance: a fire this late (after its jittered time) is a catch-up.
const catchUpTolerance = time.Minute

// Scheduler is the agent-side reconciler: it installs the desired schedules
// of its host and fires them. It never builds commands; the console does.
//
// Apply stops the previous set (waiting for its loop to exit), rebuilds from
// scratch, starts and reports the version it applied. While the agent is
// offline nothing fires; when it is back, each schedule whose window passed
// fires once, marked catch_up, however many windows it missed.
type Scheduler struct {
	host  string
	clock Clock
	sink  Sink
	fires FireLog
	log   *slog.Logger

	mu      sync.Mutex
	version int64
	running bool
	stop    chan struct{}
	done    chan struct{}
	wake    chan struct{}
	online  bool
}

// NewScheduler builds a stopped scheduler for one host.
func NewScheduler(hostID string, clock Clock, sink Sink, fires FireLog, log *slog.Logger) *Scheduler {
	if log == nil {
		log = slog.Default()
	}
	return &Scheduler{host: hostID, clock: clock, sink: sink, fires: fires, log: log.With("component", "scheduler"),
		wake: make(chan struct{}, 1)}
}

// installed is one schedule ready to fire.
type installed struct {
	entry  wire.ScheduleEntry
	sched  cron.Schedule
	spec   string
	offset time.Duration
	last   time.Time // last window fired (or the install time)
	// retryAt delays the next attempt after the sink failed.
	retryAt time.Time
}

// due is when the entry next wants attention.
func (in *installed) due() time.Time {
	d := in.sched.Next(in.last)
	if d.IsZero() {
		return d
	}
	d = d.Add(in.offset)
	if in.retryAt.After(d) {
		return in.retryAt
	}
	return d
}

// Version is the version currently applied (0 before the first Apply).
func (s *Scheduler) Version() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.version
}

// Apply replaces the installed schedules with d and reports the result. A
// desired state with the version already running is ignored (the retained
// message comes again on every reconnect).
func (s *Scheduler) Apply(d wire.SchedulesDesired) error {
	s.mu.Lock()
	if s.running && d.Version == s.version {
		s.mu.Unlock()
		return nil
	}
	s.mu.Unlock()
	s.Stop()

	now := s.clock.Now()
	var entries []*installed
	var skipped []wire.SkippedSchedule
	var next []wire.NextRun
	for _, e := range d.Schedules {
		if !e.Enabled {
			continue // disabled entries are skipped silently
		}
		sched, err := ParseCron(e.Cron, e.Timezone)
		if err != nil {
			s.log.Warn("schedule skipped", "schedule_id", e.ID, "error", err)
			skipped = append(skipped, wire.SkippedSchedule{ID: e.ID, Reason: err.Error()})
			continue
		}
		in := &installed{entry: e, sched: sched, spec: e.Cron + "|" + e.Timezone,
			offset: Offset(s.host, e.ID, time.Duration(e.JitterS)*time.Second)}
		last, spec, ok := s.fires.Last(e.ID)
		if ok && spec == in.spec {
			in.last = last
		} else {
			// A new or changed schedule counts from now: its past windows
			// were never due under this expression.
			in.last = now
			if err := s.fires.Set(e.ID, now, in.spec); err != nil {
				return fmt.Errorf("scheduler: %w", err)
			}
		}
		entries = append(entries, in)
		next = append(next, wire.NextRun{ID: e.ID, Next: in.sched.Next(in.last).Add(in.offset).UTC()})
	}
	sort.Slice(skipped, func(i, j int) bool { return skipped[i].ID < skipped[j].ID })

	s.mu.Lock()
	s.version = d.Version
	s.running = true
	s.stop = make(chan struct{})
	s.done = make(chan struct{})
	stop, done := s.stop, s.done
	s.mu.Unlock()
	go s.loop(d.Version, entries, stop, done)

	return s.sink.Report(wire.SchedulesReported{Version: d.Version, AppliedAt: now.UTC(), Skipped: skipped, Next: next})
}

// Stop stops firing and waits for the loop to exit. Safe to call twice.
func (s *Scheduler) Stop() {
	s.mu.Lock()
	if !s.running {
		s.mu.Unlock()
		return
	}
	s.running = false
	stop, done := s.stop, s.done
	s.mu.Unlock()
	close(stop)
	<-done
}

// SetOnline tells the scheduler whether the console can be reached. Fires
// wait while offline and coalesce into one catch-up per schedule.
func (s *Scheduler) SetOnline(online bool) {
	s.mu.Lock()
	s.online = online
	s.mu.Unlock()
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Scheduler) isOnline() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.online
}

func (s *Scheduler) loop(version int64, entries []*installed, stop, done chan struct{}) {
	defer close(done)
	for {
		now := s.clock.Now()
		if s.isOnline() {
			for _, in := range entries {
				s.fireIfDue(version, in, now)
			}
		}
		var wait time.Duration = -1
		for _, in := range entries {
			due := in.due()
			if due.IsZero() {
				continue
			}
			d := due.Sub(now)
			if d < 0 {
				d = 0 // due but offline: wait for a wake-up, re-check soon
				if !s.isOnline() {
					continue
				}
			}
			if wait < 0 || d < wait {
				wait = d
			}
		}
		var timer <-chan time.Time
		if wait >= 0 {
			timer = s.clock.After(wait)
		}
		select {
		case <-stop:
			return
		case <-s.wake:
		case <-timer:
		}
	}
}

// fireIfDue fires the latest window at or before now that is later than the
// last one fired: one fire however many windows passed.
func (s *Scheduler) fireIfDue(version int64, in *installed, now time.Time) {
	first := in.sched.Next(in.last)
	if first.IsZero() || first.Add(in.offset).After(now) || in.retryAt.After(now) {
		return
	}
	window, missed := first, 0
	for i := 0; i < maxWindows; i++ {
		n := in.sched.Next(window)
		if n.IsZero() || n.Add(in.offset).After(now) {
			break
		}
		window, missed = n, missed+1
	}
	f := wire.Fire{
		FireID:          newFireID(),
		ScheduleID:      in.entry.ID,
		ScheduleVersion: version,
		ScheduledAt:     window.UTC(),
		FiredAt:         now.UTC(),
		CatchUp:         missed > 0 || now.Sub(window.Add(in.offset)) > catchUpTolerance,
	}
	// Queue the fire first: if the agent dies before the log is written the
	// same window fires again, and the console's (schedule, scheduled_at)
	// key turns it into the same job.
	if err := s.sink.Fire(f); err != nil {
		s.log.Error("fire not queued; will retry", "schedule_id", in.entry.ID, "error", err)
		in.retryAt = now.Add(sinkRetry)
		return
	}
	if err := s.fires.Set(in.entry.ID, window, in.spec); err != nil {
		s.log.Error("fire time not saved", "schedule_id", in.entry.ID, "error", err)
	}
	in.last = window
	s.log.Info("schedule fired", "schedule_id", in.entry.ID, "scheduled_at", f.ScheduledAt, "catch_up", f.CatchUp, "missed_windows", missed)
}

func newFireID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return "fire-" + hex.EncodeToString(b)
}
