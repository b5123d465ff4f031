package agent

import (
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// Commands queued for the agent while it was away reach it right after it
// reconnects, in whatever order the broker keeps them: they must start in
// the order the console issued them, each exactly once.
func TestQueuedCommandsStartInIssueOrder(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	// Every command of the queue must land inside the window, however
	// slowly this machine runs.
	e.window = 5 * time.Second

	// A first run makes the broker keep a session (and its subscription)
	// for the agent while it is away.
	stop := e.start()
	b.waitStatus(t, true, 0)
	stop()
	seen := len(b.statuses(t))

	base := time.Now().Add(-time.Minute)
	issued := func(n int) time.Time { return base.Add(time.Duration(n) * time.Second) }
	for _, n := range []int{3, 1, 4, 2} {
		b.send(t, e.backup(fmt.Sprintf("job-%d", n), issued(n)))
	}
	b.send(t, e.backup("job-1", issued(1))) // delivered twice (QoS 1)

	stop = e.start()
	b.waitStatus(t, true, seen)
	want := []string{"job-1", "job-2", "job-3", "job-4"}
	for _, id := range want {
		if r := b.waitResult(t, id); r.Status != wire.StatusSucceeded {
			t.Errorf("%s ended %s (%s), want succeeded", id, r.Status, r.Error)
		}
	}
	stop()

	calls, locked := e.restic.runs()
	if !slices.Equal(locked, want) {
		t.Errorf("jobs started in the order %v, want the order issued %v", locked, want)
	}
	for _, id := range want {
		if n := e.restic.count(id); n != 1 {
			t.Errorf("%s ran %d times, want once (runs: %v)", id, n, calls)
		}
	}
}

// After a restart the agent replays its journal: a job it had accepted
// but not started runs, a job that was running is reported failed because
// of the restart, and a finished job is not run again, not even when the
// broker delivers its command once more.
func TestRecoveryAfterRestart(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	base := time.Now().Add(-time.Hour)
	jr := e.journal()
	accept := func(cmd wire.Command, states ...string) {
		t.Helper()
		if _, err := jr.accept(cmd, time.Now().UTC()); err != nil {
			t.Fatal(err)
		}
		for _, s := range states {
			if err := jr.setState(cmd.JobID, s, time.Now().UTC()); err != nil {
				t.Fatal(err)
			}
		}
	}
	accept(e.backup("job-done", base), jobRunning, jobDone)
	accept(e.backup("job-running", base.Add(1*time.Second)), jobRunning)
	// Received in the other order than issued: they start as issued.
	accept(e.backup("job-recv-2", base.Add(3*time.Second)))
	accept(e.backup("job-recv-1", base.Add(2*time.Second)))
	doneBefore := e.entry("job-done")
	runningBefore := e.entry("job-running")

	stop := e.start()
	st := b.waitStatus(t, true, 0)
	if st.AgentVersion != "test" || st.ResticVersion != "0.18.1" {
		t.Errorf("status = %+v, want agent version test and restic 0.18.1", st)
	}
	r := b.waitResult(t, "job-running")
	if r.Status != wire.StatusFailed || r.ExitCode != -1 || !strings.Contains(r.Error, "agent restarted") {
		t.Errorf("interrupted job's result = %s %d %q, want failed -1 with the agent's restart as the reason", r.Status, r.ExitCode, r.Error)
	}
	if !r.StartedAt.Equal(runningBefore.StartedAt) {
		t.Errorf("interrupted job's start = %v, want the journaled %v", r.StartedAt, runningBefore.StartedAt)
	}
	for _, id := range []string{"job-recv-1", "job-recv-2"} {
		if r := b.waitResult(t, id); r.Status != wire.StatusSucceeded {
			t.Errorf("%s ended %s (%s), want succeeded", id, r.Status, r.Error)
		}
	}
	// A copy of the finished job's command arrives; the command after it
	// shows the agent has handled it.
	b.send(t, e.backup("job-done", base))
	b.send(t, e.backup("job-after", base.Add(10*time.Second)))
	b.waitResult(t, "job-after")
	seen := len(b.statuses(t))
	stop()
	// Stopping, the agent says it is offline (the broker hands the message
	// to its inline subscriber after acknowledging it: wait for it).
	b.waitStatus(t, false, seen)
	calls, locked := e.restic.runs()
	if want := []string{"job-recv-1", "job-recv-2", "job-after"}; !slices.Equal(locked, want) {
		t.Errorf("jobs started in the order %v, want %v", locked, want)
	}
	// Runs begin on their own goroutines, in any order.
	slices.Sort(calls)
	if want := []string{"job-after", "job-recv-1", "job-recv-2"}; !slices.Equal(calls, want) {
		t.Errorf("restic runs %v, want each of %v once and nothing else", calls, want)
	}
	if rs := b.results(t)["job-done"]; len(rs) != 0 {
		t.Errorf("the finished job was reported again: %+v", rs)
	}
	if after := e.entry("job-done"); after.State != jobDone || !after.DoneAt.Equal(doneBefore.DoneAt) {
		t.Errorf("finished job's journal entry changed: %s done at %v, was %s at %v", after.State, after.DoneAt, doneBefore.State, doneBefore.DoneAt)
	}
	for _, id := range []string{"job-running", "job-recv-1", "job-recv-2", "job-after"} {
		if s := e.entry(id).State; s != jobDone {
			t.Errorf("%s journaled %s, want done", id, s)
		}
	}
}

// A window's timer that fires after a newer connection attempt began must
// leave the commands to that attempt's window: started early, they would
// miss the order of the queue still arriving.
func TestStaleGatheringTimerStartsNothing(t *testing.T) {
	g := gathering{window: gatherWindow}
	if g.add(wire.Command{JobID: "before"}) {
		t.Fatal("a command was gathered with no connection attempt")
	}
	g.begin()
	first := g.current()
	if !g.add(wire.Command{JobID: "a"}) {
		t.Fatal("a command right after a connection attempt was not gathered")
	}
	g.begin() // the connection dropped; autopaho tries again
	if cmds, ok := g.end(first); ok || cmds != nil {
		t.Fatalf("the stale timer took %v", cmds)
	}
	g.add(wire.Command{JobID: "b"})
	cmds, ok := g.end(g.current())
	if !ok || len(cmds) != 2 || cmds[0].JobID != "a" || cmds[1].JobID != "b" {
		t.Fatalf("window end = %v %v, want both commands", cmds, ok)
	}
	if g.add(wire.Command{JobID: "c"}) {
		t.Fatal("a command was gathered after the window ended")
	}
}
