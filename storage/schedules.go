package storage

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/restic-manager/restic-manager/schedules"
)

// HostSchedules is a host's schedule set: the desired version the console
// owns and the version the agent last reported applied.
type HostSchedules struct {
	HostID    string               `json:"host_id"`
	Version   int64                `json:"version"`
	UpdatedAt time.Time            `json:"updated_at,omitzero"`
	Schedules []schedules.Schedule `json:"schedules"`
	// Policy are the schedules the host's matching policies give it, each
	// with its PolicyID (recomputed when policies or labels change).
	Policy []schedules.Schedule `json:"policy,omitempty"`
	// The applied state lives in a key of its own (appliedKey): every
	// agent report writes it, and rewriting the whole set for three fields
	// was ~250 µs of decode and encode per report (10,000 of them after a
	// fleet-wide policy edit). Records from before the split carry it
	// inline, which is read when the key is missing and moved on the next
	// write.
	AppliedVersion int64             `json:"applied_version,omitempty"`
	AppliedAt      time.Time         `json:"applied_at,omitzero"`
	Skipped        []SkippedSchedule `json:"skipped,omitempty"`
}

// Applied is what a host's agent last reported applied.
type Applied struct {
	Version int64             `json:"version"`
	At      time.Time         `json:"at,omitzero"`
	Skipped []SkippedSchedule `json:"skipped,omitempty"`
}

func (hs HostSchedules) applied() Applied {
	return Applied{Version: hs.AppliedVersion, At: hs.AppliedAt, Skipped: hs.Skipped}
}

func (hs *HostSchedules) setApplied(a Applied) {
	hs.AppliedVersion, hs.AppliedAt, hs.Skipped = a.Version, a.At, a.Skipped
}

// SkippedSchedule is a schedule the agent could not install.
type SkippedSchedule struct {
	ID     string `json:"id"`
	Reason string `json:"reason"`
}

const (
	schedPrefix   = "sched/"
	fireJobPrefix = "firejob/"
)

func schedKey(host string) []byte { return []byte(schedPrefix + host) }

const appliedPrefix = "applied/"

func appliedKey(host string) []byte { return []byte(appliedPrefix + host) }

// storedSchedules is a host's set as read in a transaction: what
// writeSchedules needs to write only what changed.
type storedSchedules struct {
	raw     []byte  // the set's record, nil when there is none
	applied Applied // the applied state as read
	inline  bool    // the applied state came from inside the set's record
}

// readSchedules reads a host's set and its applied state (an empty set at
// version 0 when it has none).
func readSchedules(txn *badger.Txn, hostID string) (HostSchedules, storedSchedules, error) {
	hs := HostSchedules{HostID: hostID}
	var st storedSchedules
	raw, err := getJSONRaw(txn, schedKey(hostID), &hs)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return hs, st, err
	}
	st.raw = raw
	var a Applied
	switch _, err := getJSONRaw(txn, appliedKey(hostID), &a); {
	case err == nil:
		hs.setApplied(a)
	case errors.Is(err, ErrNotFound):
		st.inline = hs.AppliedVersion != 0 || !hs.AppliedAt.IsZero() || len(hs.Skipped) > 0
	default:
		return hs, st, err
	}
	st.applied = hs.applied()
	return hs, st, nil
}

// writeSchedules stores hs read as st: the set without its applied state,
// and the applied state in its own key when it changed (or moves out of an
// older record). errUnchanged when neither changed.
func writeSchedules(txn *badger.Txn, hs HostSchedules, st storedSchedules) error {
	a := hs.applied()
	rec := hs
	rec.setApplied(Applied{})
	setErr := setChanged(txn, schedKey(hs.HostID), st.raw, rec)
	if setErr != nil && !errors.Is(setErr, errUnchanged) {
		return setErr
	}
	if st.inline || !appliedEqual(a, st.applied) {
		return setJSON(txn, appliedKey(hs.HostID), a)
	}
	return setErr
}

func appliedEqual(a, b Applied) bool {
	return a.Version == b.Version && a.At.Equal(b.At) && slices.Equal(a.Skipped, b.Skipped)
}

// GetSchedules returns a host's schedules (an empty set at version 0 when it
// has none).
func (s *Store) GetSchedules(hostID string) (HostSchedules, error) {
	var hs HostSchedules
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		hs, _, err = readSchedules(txn, hostID)
		return err
	})
	if err != nil {
		return hs, fmt.Errorf("storage: schedules of %s: %w", hostID, err)
	}
	return hs, nil
}

// UpdateApplied records what a host's agent reports applied: fn gets the
// desired version and the applied state as stored, changes the latter or
// returns an error (which aborts: the caller's own sentinel comes back
// wrapped). Only the small applied key is read and written beside the set's
// version, so a report costs a fraction of UpdateSchedules. A host without
// a schedule set has desired version 0.
func (s *Store) UpdateApplied(hostID string, fn func(desired int64, a *Applied) error) error {
	if err := validID(hostID); err != nil {
		return fmt.Errorf("storage: update applied: %w", err)
	}
	err := s.modify(appliedKey(hostID), func(txn *badger.Txn) error {
		// The set's version (and, in a record from before the split, its
		// applied state), without decoding its schedules into structs.
		var head struct {
			Version        int64             `json:"version"`
			AppliedVersion int64             `json:"applied_version"`
			AppliedAt      time.Time         `json:"applied_at"`
			Skipped        []SkippedSchedule `json:"skipped"`
		}
		switch _, err := getJSONRaw(txn, schedKey(hostID), &head); {
		case errors.Is(err, ErrNotFound):
			// No set yet: the host must still exist (a deleted host's
			// late report must not leave a key behind).
			if err := present(txn, hostKey(hostID)); err != nil {
				return err
			}
		case err != nil:
			return err
		}
		a := Applied{Version: head.AppliedVersion, At: head.AppliedAt, Skipped: head.Skipped}
		raw, err := getJSONRaw(txn, appliedKey(hostID), &a)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := fn(head.Version, &a); err != nil {
			return err
		}
		return setChanged(txn, appliedKey(hostID), raw, a)
	})
	if err != nil {
		return fmt.Errorf("storage: update applied schedules of %s: %w", hostID, err)
	}
	return nil
}

// UpdateSchedules is read-modify-write of a host's schedule set in one
// transaction; concurrent writers are serialised, so a version bump made in
// fn is a compare-and-set.
func (s *Store) UpdateSchedules(hostID string, fn func(*HostSchedules) error) (HostSchedules, error) {
	if err := validID(hostID); err != nil {
		return HostSchedules{}, fmt.Errorf("storage: update schedules: %w", err)
	}
	key := schedKey(hostID)
	var out HostSchedules
	err := s.modify(key, func(txn *badger.Txn) error {
		// The host must exist; its record need not be decoded.
		if err := present(txn, hostKey(hostID)); err != nil {
			return err
		}
		hs, st, err := readSchedules(txn, hostID)
		if err != nil {
			return err
		}
		if err := fn(&hs); err != nil {
			return err
		}
		hs.HostID = hostID
		out = hs
		return writeSchedules(txn, hs, st)
	})
	if err != nil {
		return HostSchedules{}, fmt.Errorf("storage: update schedules of %s: %w", hostID, err)
	}
	return out, nil
}

func fireJobKey(hostID, scheduleID string, scheduledAt time.Time) []byte {
	return []byte(fireJobPrefix + hostID + "/" + scheduleID + "/" + idxTime(scheduledAt))
}

// CreateScheduledJob stores j unless a job for the same (schedule,
// scheduled_at) exists; then it returns that job and created=false. The
// check and the insert are one transaction, so a fire delivered twice, even
// concurrently, makes one job.
//
// Audit entries, if given, are written in the same transaction when the job
// is created: one commit and one sync per fire instead of two.
func (s *Store) CreateScheduledJob(j Job, scheduledAt time.Time, audit ...AuditEntry) (Job, bool, error) {
	if err := validID(j.ID); err != nil {
		return Job{}, false, fmt.Errorf("storage: create scheduled job: %w", err)
	}
	if err := validID(j.ScheduleID); err != nil {
		return Job{}, false, fmt.Errorf("storage: create scheduled job: schedule: %w", err)
	}
	if err := validID(j.HostID); err != nil {
		return Job{}, false, fmt.Errorf("storage: create scheduled job: host: %w", err)
	}
	key := fireJobKey(j.fireHost(), j.ScheduleID, scheduledAt)
	for i := range audit {
		audit[i] = audit[i].keyed()
	}
	var out Job
	var created bool
	err := s.modify(key, func(txn *badger.Txn) error {
		created = false
		raw, err := getRaw(txn, key)
		if err == nil {
			return getJSON(txn, jobKey(string(raw)), &out)
		}
		if !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := absent(txn, jobKey(j.ID)); err != nil {
			return err
		}
		if err := txn.Set(key, []byte(j.ID)); err != nil {
			return err
		}
		for _, e := range audit {
			if err := putAudit(txn, e); err != nil {
				return err
			}
		}
		out, created = j, true
		return putJob(txn.Set, j)
	})
	if err != nil {
		return Job{}, false, fmt.Errorf("storage: create scheduled job %s: %w", j.ID, err)
	}
	return out, created, nil
}

// LatestFire returns the latest scheduled time for which a job was made
// from a host's schedule (ok false when none was).
func (s *Store) LatestFire(hostID, scheduleID string) (time.Time, bool, error) {
	prefix := []byte(fireJobPrefix + hostID + "/" + scheduleID + "/")
	var out time.Time
	var ok bool
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix})
		defer it.Close()
		// In reverse, seek past the prefix's last key.
		it.Seek(append(append([]byte{}, prefix...), 0xff))
		if !it.ValidForPrefix(prefix) {
			return nil
		}
		ts := strings.TrimPrefix(string(it.Item().Key()), string(prefix))
		n, err := strconv.ParseUint(ts, 16, 64)
		if err != nil {
			return fmt.Errorf("fire key %q: %w", it.Item().Key(), err)
		}
		out, ok = time.Unix(0, int64(n)).UTC(), true
		return nil
	})
	if err != nil {
		return time.Time{}, false, fmt.Errorf("storage: latest fire of %s/%s: %w", hostID, scheduleID, err)
	}
	return out, ok, nil
}

// EachSchedules calls fn for every host's schedule set, in host ID order, a
// page at a time (fn runs outside any transaction), until ctx ends.
func (s *Store) EachSchedules(ctx context.Context, fn func(HostSchedules)) error {
	prefix := []byte(schedPrefix)
	start := prefix
	const page = 500
	for {
		var batch []HostSchedules
		err := s.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Seek(start); it.ValidForPrefix(prefix) && len(batch) < page; it.Next() {
				var hs HostSchedules
				if err := it.Item().Value(func(b []byte) error { return decode(b, &hs) }); err != nil {
					return fmt.Errorf("%s: %w", it.Item().Key(), err)
				}
				var a Applied
				switch err := getJSON(txn, appliedKey(hs.HostID), &a); {
				case err == nil:
					hs.setApplied(a)
				case !errors.Is(err, ErrNotFound):
					return fmt.Errorf("applied state of %s: %w", hs.HostID, err)
				}
				batch = append(batch, hs)
				start = append(it.Item().KeyCopy(nil), 0) // the next key after this one
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("storage: each schedules: %w", err)
		}
		for _, hs := range batch {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			fn(hs)
		}
		if len(batch) < page {
			return nil
		}
	}
}
