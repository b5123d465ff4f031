package agent

import (
	"os"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// A finished job's journal entry keeps no secret: the sealed repository
// and the arguments are gone, what recognises a duplicate stays, and a
// duplicate delivered afterwards is still ignored.
func TestJournalDropsSecretsOfADoneJob(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	stop := e.start()
	b.waitStatus(t, true, 0)
	cmd := e.backup("job-1", time.Now())
	b.send(t, cmd)
	b.waitResult(t, "job-1")
	waitFor(t, "job-1 journaled done", func() bool { return e.entry("job-1").State == jobDone })
	en := e.entry("job-1")
	if en.Command.SealedRepo != "" || en.Command.Args != nil {
		t.Errorf("done entry still holds sealed_repo %d bytes, args %s", len(en.Command.SealedRepo), en.Command.Args)
	}
	if en.Command.JobID != "job-1" || en.Command.Kind != wire.JobBackup || !en.Command.IssuedAt.Equal(cmd.IssuedAt) || en.DoneAt.IsZero() {
		t.Errorf("done entry lost what it is kept for: %+v", en)
	}
	raw, err := os.ReadFile(e.journal().path("job-1"))
	if err != nil || strings.Contains(string(raw), "sealed_repo") {
		t.Errorf("the journal file still names a sealed repository (%v):\n%s", err, raw)
	}
	b.send(t, cmd)
	b.send(t, e.backup("job-2", time.Now()))
	b.waitResult(t, "job-2")
	stop()
	if n := e.restic.count("job-1"); n != 1 {
		t.Errorf("job-1 ran %d times, want once", n)
	}
}

// Entries left by an older agent with their secrets are cleaned when the
// journal is read at start; a job not started yet keeps its command.
func TestJournalScrubsOldEntries(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	jr := e.journal()
	now := time.Now().UTC()
	old := journalEntry{Command: e.backup("job-old", now), State: jobDone, ReceivedAt: now, DoneAt: now}
	waiting := journalEntry{Command: e.backup("job-new", now), State: jobReceived, ReceivedAt: now}
	for _, en := range []journalEntry{old, waiting} {
		if err := jr.put(en); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := jr.all(now); err != nil {
		t.Fatal(err)
	}
	if en, _, _ := jr.get("job-old"); en.Command.SealedRepo != "" || en.Command.Args != nil {
		t.Error("an old done entry kept its sealed repository")
	}
	if en, _, _ := jr.get("job-new"); en.Command.SealedRepo == "" || en.Command.Args == nil {
		t.Error("a job not started yet lost its command")
	}
}
