package agent

import (
	"slices"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// A job waiting behind another on its repository is cancelled without ever
// starting, and the job ahead of it is not disturbed.
func TestCancelQueuedJob(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	e.restic.holdJob("job-1")
	stop := e.start()
	b.waitStatus(t, true, 0)

	base := time.Now()
	b.send(t, e.backup("job-1", base))
	b.send(t, e.backup("job-2", base.Add(time.Second)))
	waitFor(t, "job-1 running and job-2 queued behind it", func() bool {
		calls, locked := e.restic.runs()
		return slices.Equal(locked, []string{"job-1"}) && slices.Contains(calls, "job-2")
	})
	b.cancel(t, "job-2")
	if r := b.waitResult(t, "job-2"); r.Status != wire.StatusCancelled {
		t.Errorf("cancelled queued job ended %s (%s), want cancelled", r.Status, r.Error)
	}
	e.restic.release("job-1")
	if r := b.waitResult(t, "job-1"); r.Status != wire.StatusSucceeded {
		t.Errorf("job ahead ended %s (%s), want succeeded", r.Status, r.Error)
	}
	stop()

	if _, locked := e.restic.runs(); !slices.Equal(locked, []string{"job-1"}) {
		t.Errorf("jobs that held the repository: %v, want only job-1", locked)
	}
	if en := e.entry("job-2"); en.State != jobDone || !en.StartedAt.IsZero() {
		t.Errorf("cancelled queued job journaled %s, started %v; want done, never started", en.State, en.StartedAt)
	}
}

// A running job is cancelled (restic is interrupted) and reported so; a
// copy of its command delivered afterwards does not run it again.
func TestCancelRunningJob(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	e.restic.holdJob("job-1")
	stop := e.start()
	b.waitStatus(t, true, 0)

	base := time.Now()
	b.send(t, e.backup("job-1", base))
	waitFor(t, "job-1 running", func() bool {
		_, locked := e.restic.runs()
		return slices.Contains(locked, "job-1")
	})
	if s := e.entry("job-1").State; s != jobRunning {
		t.Errorf("running job journaled %s, want running", s)
	}
	b.cancel(t, "job-1")
	if r := b.waitResult(t, "job-1"); r.Status != wire.StatusCancelled {
		t.Errorf("cancelled running job ended %s (%s), want cancelled", r.Status, r.Error)
	}
	b.send(t, e.backup("job-1", base))
	b.send(t, e.backup("job-2", base.Add(time.Second)))
	b.waitResult(t, "job-2")
	stop()

	if n := e.restic.count("job-1"); n != 1 {
		t.Errorf("job-1 ran %d times, want once", n)
	}
	if s := e.entry("job-1").State; s != jobDone {
		t.Errorf("cancelled job journaled %s, want done", s)
	}
}

// A cancel that arrives before its job leaves a tombstone: the command,
// delivered late, never runs.
func TestCancelBeforeArrival(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	stop := e.start()
	b.waitStatus(t, true, 0)

	base := time.Now()
	b.cancel(t, "job-1")
	b.send(t, e.backup("job-1", base))
	b.send(t, e.backup("job-2", base.Add(time.Second)))
	b.waitResult(t, "job-2")
	stop()

	if n := e.restic.count("job-1"); n != 0 {
		t.Errorf("a job cancelled before it arrived ran %d times", n)
	}
	if s := e.entry("job-1").State; s != jobDone {
		t.Errorf("tombstone journaled %s, want done", s)
	}
}

// A command still held in the gathering window when its cancel arrives
// ends cancelled, not run to completion.
func TestCancelGatheredJob(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	e.window = 3 * time.Second
	e.restic.holdJob("job-1") // only a cancel can end it
	stop := e.start()
	b.waitStatus(t, true, 0)
	stop()
	seen := len(b.statuses(t))

	// mochi hands a session its queue sorted by the second each message
	// was queued in, in any order within one second: the cancel goes a
	// second later so that it arrives after its command.
	b.send(t, e.backup("job-1", time.Now()))
	for sent := time.Now().Unix(); time.Now().Unix() == sent; {
		time.Sleep(10 * time.Millisecond)
	}
	b.cancel(t, "job-1")
	stop = e.start()
	b.waitStatus(t, true, seen)
	if r := b.waitResult(t, "job-1"); r.Status != wire.StatusCancelled {
		t.Errorf("job cancelled in the window ended %s (%s), want cancelled", r.Status, r.Error)
	}
	stop()
	if n := e.restic.count("job-1"); n > 1 {
		t.Errorf("job-1 ran %d times", n)
	}
}
