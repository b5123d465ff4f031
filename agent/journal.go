package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// Journal states of a job on this agent.
const (
	jobReceived = "received"
	jobRunning  = "running"
	jobDone     = "done"
)

// journalEntry is what the agent remembers of a job it accepted. It makes
// command delivery idempotent (QoS 1 may deliver twice) and lets a restarted
// agent report jobs that were interrupted.
//
// Only a job still "received" keeps its whole command (a restart starts it
// from here). Once it runs, the sealed repository (the repository's URL and
// password, sealed to this agent) and the arguments are dropped: a done
// entry is kept for 30 days only to recognise a late duplicate, and a
// running one only to report it failed after a restart, and neither needs
// them.
type journalEntry struct {
	Command    wire.Command `json:"command"`
	State      string       `json:"state"`
	ReceivedAt time.Time    `json:"received_at"`
	StartedAt  time.Time    `json:"started_at,omitzero"`
	DoneAt     time.Time    `json:"done_at,omitzero"`
	// Held: the job ended held by its forget guard; an approved copy of its
	// command (Command.Approved) runs it once more.
	Held bool `json:"held,omitempty"`
}

type journal struct{ dir string }

// doneRetention is how long finished jobs are remembered to recognise a late
// duplicate delivery.
const doneRetention = 30 * 24 * time.Hour

func openJournal(dir string) (*journal, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	return &journal{dir: dir}, nil
}

func (j *journal) path(id string) string { return filepath.Join(j.dir, id+".json") }

func (j *journal) get(id string) (journalEntry, bool, error) {
	var e journalEntry
	b, err := os.ReadFile(j.path(id))
	if errors.Is(err, os.ErrNotExist) {
		return e, false, nil
	}
	if err != nil {
		return e, false, fmt.Errorf("journal: %w", err)
	}
	if err := json.Unmarshal(b, &e); err != nil {
		return e, false, fmt.Errorf("journal: %s: %w", id, err)
	}
	return e, true, nil
}

func (j *journal) put(e journalEntry) error {
	b, err := json.Marshal(e)
	if err != nil {
		return err
	}
	if err := writeFileAtomic(j.path(e.Command.JobID), b, 0o600); err != nil {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// accept records a new command; it reports false when the job is already
// known (a duplicate delivery). The one exception: a job its forget guard
// held runs again when an admin's approval (Command.Approved) arrives.
func (j *journal) accept(c wire.Command, now time.Time) (bool, error) {
	e, ok, err := j.get(c.JobID)
	if err != nil {
		return false, err
	}
	if ok && !(e.Held && e.State == jobDone && c.Approved) {
		return false, nil
	}
	return true, j.put(journalEntry{Command: c, State: jobReceived, ReceivedAt: now})
}

// markHeld records that a job ended held by its forget guard (done, and
// runnable once more by an approval).
func (j *journal) markHeld(id string, now time.Time) error {
	e, ok, err := j.get(id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("journal: unknown job %s", id)
	}
	e.State, e.DoneAt, e.Held = jobDone, now, true
	return j.put(e)
}

func (j *journal) setState(id, state string, now time.Time) error {
	e, ok, err := j.get(id)
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("journal: unknown job %s", id)
	}
	e.State = state
	e.scrub()
	switch state {
	case jobRunning:
		e.StartedAt = now
	case jobDone:
		e.DoneAt = now
	}
	return j.put(e)
}

// scrub drops what only starting the job needs from an entry past
// "received", and reports whether there was any.
func (e *journalEntry) scrub() bool {
	if e.State == jobReceived || e.Command.SealedRepo == "" && e.Command.SealedToRepo == "" && e.Command.Args == nil {
		return false
	}
	e.Command.SealedRepo, e.Command.SealedToRepo, e.Command.Args = "", "", nil
	return true
}

// remove forgets a job.
func (j *journal) remove(id string) error {
	if err := os.Remove(j.path(id)); err != nil && !errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("journal: %w", err)
	}
	return nil
}

// all lists every entry, pruning finished ones past their retention.
func (j *journal) all(now time.Time) ([]journalEntry, error) {
	ents, err := os.ReadDir(j.dir)
	if err != nil {
		return nil, fmt.Errorf("journal: %w", err)
	}
	var out []journalEntry
	for _, d := range ents {
		name := d.Name()
		if !strings.HasSuffix(name, ".json") || strings.HasPrefix(name, ".") {
			continue
		}
		e, ok, err := j.get(strings.TrimSuffix(name, ".json"))
		if err != nil || !ok {
			continue
		}
		if e.State == jobDone && now.Sub(e.DoneAt) > doneRetention {
			_ = os.Remove(filepath.Join(j.dir, name))
			continue
		}
		// Entries an older agent wrote kept their secrets to the end.
		if e.scrub() {
			_ = j.put(e)
		}
		out = append(out, e)
	}
	return out, nil
}
