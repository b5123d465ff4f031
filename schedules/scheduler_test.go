package schedules

import (
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// fakeClock moves only when told to. After registers a waiter that fires
// once the clock passes its deadline.
type fakeClock struct {
	mu      sync.Mutex
	now     time.Time
	waiters []waiter
	blocked chan struct{}
}

type waiter struct {
	at time.Time
	ch chan time.Time
}

func newFakeClock(t time.Time) *fakeClock {
	return &fakeClock{now: t, blocked: make(chan struct{}, 100)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) After(d time.Duration) <-chan time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	ch := make(chan time.Time, 1)
	if d <= 0 {
		ch <- c.now
	} else {
		c.waiters = append(c.waiters, waiter{c.now.Add(d), ch})
	}
	c.blocked <- struct{}{}
	return ch
}

// Advance moves time forward and wakes every waiter that is due.
func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	var keep []waiter
	for _, w := range c.waiters {
		if !w.at.After(c.now) {
			w.ch <- c.now
		} else {
			keep = append(keep, w)
		}
	}
	c.waiters = keep
	c.mu.Unlock()
}

// settle waits until the scheduler loop has gone back to waiting on the
// clock (it calls After once per turn).
func (c *fakeClock) settle(t *testing.T) {
	t.Helper()
	// Drain turns until none happens for a moment: the loop is parked.
	for {
		select {
		case <-c.blocked:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

type memSink struct {
	mu      sync.Mutex
	fires   []wire.Fire
	reports []wire.SchedulesReported
	fail    bool
}

func (m *memSink) Fire(f wire.Fire) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.fail {
		return errors.New("disk full")
	}
	m.fires = append(m.fires, f)
	return nil
}

func (m *memSink) Report(r wire.SchedulesReported) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reports = append(m.reports, r)
	return nil
}

func (m *memSink) Fires() []wire.Fire {
	m.mu.Lock()
	defer m.mu.Unlock()
	return append([]wire.Fire(nil), m.fires...)
}

type memLog struct {
	mu sync.Mutex
	m  map[string]struct {
		at   time.Time
		spec string
	}
}

func (l *memLog) Last(id string) (time.Time, string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[id]
	return e.at, e.spec, ok
}

func (l *memLog) Set(id string, at time.Time, spec string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]struct {
			at   time.Time
			spec string
		}{}
	}
	l.m[id] = struct {
		at   time.Time
		spec string
	}{at, spec}
	return nil
}

var t0 = time.Date(2026, 5, 4, 10, 0, 30, 0, time.UTC)

func newTestScheduler(t *testing.T) (*Scheduler, *fakeClock, *memSink, *memLog) {
	t.Helper()
	clock := newFakeClock(t0)
	sink, log := &memSink{}, &memLog{}
	s := NewScheduler("host-1", clock, sink, log, nil)
	s.SetOnline(true)
	t.Cleanup(s.Stop)
	return s, clock, sink, log
}

func desired(version int64, entries ...wire.ScheduleEntry) wire.SchedulesDesired {
	return wire.SchedulesDesired{Version: version, Schedules: entries}
}

func everyMinute(id string) wire.ScheduleEntry {
	return wire.ScheduleEntry{ID: id, Kind: "backup", Cron: "* * * * *", Enabled: true}
}

func TestApplyReportsVersion(t *testing.T) {
	s, clock, sink, _ := newTestScheduler(t)
	bad := wire.ScheduleEntry{ID: "bad", Kind: "backup", Cron: "61 * * * *", Enabled: true}
	off := wire.ScheduleEntry{ID: "off", Kind: "backup", Cron: "nonsense", Enabled: false}
	if err := s.Apply(desired(7, everyMinute("s1"), bad, off)); err != nil {
		t.Fatal(err)
	}
	clock.settle(t)
	if len(sink.reports) != 1 {
		t.Fatalf("%d reports, want 1", len(sink.reports))
	}
	r := sink.reports[0]
	if r.Version != 7 || !r.AppliedAt.Equal(t0) {
		t.Errorf("report version %d at %s", r.Version, r.AppliedAt)
	}
	// The invalid expression is named with its reason; the disabled one is silent.
	if len(r.Skipped) != 1 || r.Skipped[0].ID != "bad" || r.Skipped[0].Reason == "" {
		t.Errorf("skipped = %+v, want only bad with a reason", r.Skipped)
	}
	if len(r.Next) != 1 || r.Next[0].ID != "s1" || !r.Next[0].Next.Equal(time.Date(2026, 5, 4, 10, 1, 0, 0, time.UTC)) {
		t.Errorf("next = %+v", r.Next)
	}
	if s.Version() != 7 {
		t.Errorf("Version() = %d", s.Version())
	}
}

func TestTickSendsFire(t *testing.T) {
	s, clock, sink, log := newTestScheduler(t)
	if err := s.Apply(desired(1, everyMinute("s1"))); err != nil {
		t.Fatal(err)
	}
	clock.settle(t)
	if n := len(sink.Fires()); n != 0 {
		t.Fatalf("%d fires before the first window", n)
	}
	clock.Advance(30 * time.Second) // 10:01:00
	clock.settle(t)
	fires := sink.Fires()
	if len(fires) != 1 {
		t.Fatalf("%d fires at the first window, want 1", len(fires))
	}
	f := fires[0]
	if f.ScheduleID != "s1" || f.ScheduleVersion != 1 || f.CatchUp || !f.ScheduledAt.Equal(time.Date(2026, 5, 4, 10, 1, 0, 0, time.UTC)) || f.FireID == "" {
		t.Fatalf("fire = %+v", f)
	}
	clock.Advance(time.Minute)
	clock.settle(t)
	if fires := sink.Fires(); len(fires) != 2 || fires[1].FireID == fires[0].FireID {
		t.Fatalf("second window: %+v", fires)
	}
	if at, _, _ := log.Last("s1"); !at.Equal(time.Date(2026, 5, 4, 10, 2, 0, 0, time.UTC)) {
		t.Errorf("fire log holds %s", at)
	}
}

func TestDisabledEntriesDoNotFire(t *testing.T) {
	s, clock, sink, _ := newTestScheduler(t)
	e := everyMinute("s1")
	e.Enabled = false
	if err := s.Apply(desired(1, e)); err != nil {
		t.Fatal(err)
	}
	for range 5 {
		clock.Advance(time.Minute)
		clock.settle(t)
	}
	if n := len(sink.Fires()); n != 0 {
		t.Fatalf("disabled schedule fired %d times", n)
	}
}

func TestApplyReplacesPriorState(t *testing.T) {
	s, clock, sink, _ := newTestScheduler(t)
	if err := s.Apply(desired(1, everyMinute("old"))); err != nil {
		t.Fatal(err)
	}
	clock.settle(t)
	if err := s.Apply(desired(2, everyMinute("new"))); err != nil {
		t.Fatal(err)
	}
	clock.settle(t)
	for range 3 {
		clock.Advance(time.Minute)
		clock.settle(t)
	}
	fires := sink.Fires()
	if len(fires) != 3 {
		t.Fatalf("%d fires, want 3", len(fires))
	}
	for _, f := range fires {
		if f.ScheduleID != "new" || f.ScheduleVersion != 2 {
			t.Fatalf("fire from the replaced state: %+v", f)
		}
	}
	// Applying the running version again changes nothing.
	if err := s.Apply(desired(2, everyMinute("new"))); err != nil {
		t.Fatal(err)
	}
	if len(sink.reports) != 2 {
		t.Fatalf("%d reports, want 2", len(sink.reports))
	}
	s.Stop()
	s.Stop() // idempotent
}

func TestMissedWindowsFireOnceAfterRestart(t *testing.T) {
	s, clock, sink, log := newTestScheduler(t)
	if err := s.Apply(desired(1, everyMinute("s1"))); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	clock.settle(t)
	s.Stop() // the agent stops

	clock.Advance(10 * time.Minute) // ten windows pass
	// A new process with the same fire log.
	s2 := NewScheduler("host-1", clock, sink, log, nil)
	t.Cleanup(s2.Stop)
	if err := s2.Apply(desired(1, everyMinute("s1"))); err != nil {
		t.Fatal(err)
	}
	clock.settle(t)
	if n := len(sink.Fires()); n != 1 {
		t.Fatalf("%d fires while offline, want none beyond the first", n-1)
	}
	s2.SetOnline(true)
	clock.settle(t)
	fires := sink.Fires()
	if len(fires) != 2 {
		t.Fatalf("%d fires after restart, want exactly one catch-up", len(fires)-1)
	}
	c := fires[1]
	if !c.CatchUp || !c.ScheduledAt.Equal(time.Date(2026, 5, 4, 10, 11, 0, 0, time.UTC)) {
		t.Fatalf("catch-up fire = %+v, want the latest missed window 10:11", c)
	}
	// Then the normal rhythm resumes.
	clock.Advance(time.Minute)
	clock.settle(t)
	if fires := sink.Fires(); len(fires) != 3 || fires[2].CatchUp {
		t.Fatalf("after catch-up: %+v", fires)
	}
}

func TestOfflineFiresCoalesce(t *testing.T) {
	s, clock, sink, _ := newTestScheduler(t)
	if err := s.Apply(desired(1, everyMinute("s1"))); err != nil {
		t.Fatal(err)
	}
	clock.settle(t)
	s.SetOnline(false)
	clock.settle(t)
	for range 5 {
		clock.Advance(time.Minute)
		clock.settle(t)
	}
	if n := len(sink.Fires()); n != 0 {
		t.Fatalf("%d fires while disconnected", n)
	}
	s.SetOnline(true)
	clock.settle(t)
	if fires := sink.Fires(); len(fires) != 1 || !fires[0].CatchUp {
		t.Fatalf("after reconnect: %+v, want one catch-up", fires)
	}
}

func TestChangedExpressionDoesNotCatchUp(t *testing.T) {
	s, clock, sink, log := newTestScheduler(t)
	_ = log.Set("s1", t0.Add(-48*time.Hour), "0 2 * * *|")
	if err := s.Apply(desired(1, everyMinute("s1"))); err != nil {
		t.Fatal(err)
	}
	clock.settle(t)
	if n := len(sink.Fires()); n != 0 {
		t.Fatalf("a changed expression fired %d catch-ups for windows it never had", n)
	}
}

func TestSinkFailureRetries(t *testing.T) {
	s, clock, sink, _ := newTestScheduler(t)
	sink.fail = true
	if err := s.Apply(desired(1, everyMinute("s1"))); err != nil {
		t.Fatal(err)
	}
	clock.Advance(30 * time.Second)
	clock.settle(t)
	sink.mu.Lock()
	sink.fail = false
	sink.mu.Unlock()
	clock.Advance(sinkRetry)
	clock.settle(t)
	if fires := sink.Fires(); len(fires) != 1 || !fires[0].ScheduledAt.Equal(time.Date(2026, 5, 4, 10, 1, 0, 0, time.UTC)) {
		t.Fatalf("after the sink recovered: %+v", fires)
	}
}

func TestOffsetIsStableAndSpread(t *testing.T) {
	w := 10 * time.Minute
	if first, again := Offset("h1", "s", w), Offset("h1", "s", w); first != again {
		t.Fatal("offset not stable")
	}
	buckets := map[time.Duration]int{}
	for i := range 1000 {
		o := Offset("host-"+string(rune('a'+i%26))+time.Duration(i).String(), "s", w)
		if o < 0 || o >= w {
			t.Fatalf("offset %s outside window", o)
		}
		buckets[o/time.Minute]++
	}
	for m := time.Duration(0); m < 10; m++ {
		if buckets[m] < 50 {
			t.Errorf("minute %d of the window got %d of 1000 hosts: not spread", m, buckets[m])
		}
	}
	if Offset("h", "s", 0) != 0 {
		t.Error("zero window must not offset")
	}
}
