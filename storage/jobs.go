package storage

import (
	"bytes"
	"encoding/base64"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

const (
	defaultJobPage = 50
	maxJobPage     = 500
)

// CreateJob stores a new job and its index entries (per host and global,
// ordered by CreatedAt then ID). ErrExists if the ID is taken. ID and HostID
// must be non-empty without '/'. A zero CreatedAt is set to the current time
// so the job still sorts sensibly.
func (s *Store) CreateJob(j Job) error {
	if err := validID(j.ID); err != nil {
		return fmt.Errorf("storage: create job: %w", err)
	}
	if err := validID(j.HostID); err != nil {
		return fmt.Errorf("storage: create job %s: host: %w", j.ID, err)
	}
	if j.CreatedAt.IsZero() {
		j.CreatedAt = time.Now().UTC()
	}
	err := s.update(func(txn *badger.Txn) error {
		if err := absent(txn, jobKey(j.ID)); err != nil {
			return err
		}
		return putJob(txn.Set, j)
	})
	if err != nil {
		return fmt.Errorf("storage: create job %s: %w", j.ID, err)
	}
	return nil
}

// putJob writes the job record and both index entries through set (a
// transaction's or a write batch's Set).
func putJob(set func(k, v []byte) error, j Job) error {
	val, err := encode(j)
	if err != nil {
		return err
	}
	perHost, global := jobIndexKeys(j)
	if err := set(jobKey(j.ID), val); err != nil {
		return err
	}
	if err := set(perHost, nil); err != nil {
		return err
	}
	return set(global, nil)
}

// GetJob returns the job or ErrNotFound.
func (s *Store) GetJob(id string) (Job, error) {
	var j Job
	if err := s.get(jobKey(id), &j); err != nil {
		return Job{}, fmt.Errorf("storage: get job %s: %w", id, err)
	}
	return j, nil
}

// UpdateJob is read-modify-write in one transaction, like UpdateHost.
//
// ID, HostID and CreatedAt are immutable (the index keys derive from them);
// changing them returns ErrInvalid. Status rules (which transitions are
// allowed) are left to fn: the console, for one, lets a late result replace
// "expired". Concurrent updates of one job are serialised, so none is lost.
func (s *Store) UpdateJob(id string, fn func(*Job) error) (Job, error) {
	key := jobKey(id)
	// Each round, of the updates of one job that met in a batch, the first
	// is written: a caller reads again at most once per concurrent updater.
	for range maxStaleRounds {
		var (
			j   Job
			raw []byte
			ver uint64
		)
		err := s.db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if errors.Is(err, badger.ErrKeyNotFound) {
				return ErrNotFound
			}
			if err != nil {
				return err
			}
			ver = item.Version()
			if raw, err = item.ValueCopy(nil); err != nil {
				return err
			}
			return decode(raw, &j)
		})
		if err != nil {
			return Job{}, fmt.Errorf("storage: update job %s: %w", id, err)
		}
		old := j
		if err := fn(&j); err != nil {
			return Job{}, fmt.Errorf("storage: update job %s: %w", id, err)
		}
		if j.ID != old.ID || j.HostID != old.HostID || !j.CreatedAt.Equal(old.CreatedAt) {
			return Job{}, fmt.Errorf("storage: update job %s: job ID, HostID and CreatedAt are immutable: %w", id, ErrInvalid)
		}
		val, err := encode(j)
		if err != nil {
			return Job{}, fmt.Errorf("storage: update job %s: %w", id, err)
		}
		if !bytes.Equal(val, raw) {
			op := &jobOp{key: key, ver: ver, val: val, done: make(chan struct{})}
			s.commitJob(op)
			if op.err != nil {
				return Job{}, fmt.Errorf("storage: update job %s: %w", id, op.err)
			}
			if op.stale {
				continue // changed meanwhile: read it again
			}
		}
		// Also when nothing was written: the job as read may be a commit
		// that is not synced yet, and the caller may acknowledge on it.
		if err := s.durable.wait(); err != nil {
			return Job{}, fmt.Errorf("storage: update job %s: %w", id, err)
		}
		return j, nil
	}
	// Contended (another update of the same job won every round): one
	// transaction of its own, serialised with the job's other updates.
	return s.updateJobTxn(id, fn)
}

func (s *Store) updateJobTxn(id string, fn func(*Job) error) (Job, error) {
	key := jobKey(id)
	var out Job
	err := s.modify(key, func(txn *badger.Txn) error {
		var j Job
		raw, err := getJSONRaw(txn, key, &j)
		if err != nil {
			return err
		}
		old := j
		if err := fn(&j); err != nil {
			return err
		}
		if j.ID != old.ID || j.HostID != old.HostID || !j.CreatedAt.Equal(old.CreatedAt) {
			return fmt.Errorf("job ID, HostID and CreatedAt are immutable: %w", ErrInvalid)
		}
		out = j
		return setChanged(txn, key, raw, j)
	})
	if err != nil {
		return Job{}, fmt.Errorf("storage: update job %s: %w", id, err)
	}
	return out, nil
}

// maxStaleRounds bounds how often UpdateJob reads a job again because it
// changed meanwhile, before it falls back to a transaction of its own.
const maxStaleRounds = 100

// JobQuery selects jobs newest first. HostID empty means all hosts; Status
// empty means any. Cursor is opaque (from a previous page's NextCursor).
type JobQuery struct {
	HostID string
	Status string
	Limit  int // default 50, max 500
	Cursor string
}

// ListJobs returns one page, newest first, walking only the index of the
// host (or the global index), never every job record. nextCursor is empty
// when there are no more entries. A cursor that does not belong to the same
// index (host) gives ErrInvalid.
//
// The status filter is applied to the job records while walking the index:
// a rare status may walk far (up to the whole index of the host) to fill a
// page, and with a filter the last page can come back empty. Page sizes in
// the UI make that acceptable; a status index would avoid it at the cost of
// rewriting index keys on every status change.
func (s *Store) ListJobs(q JobQuery) (jobs []Job, nextCursor string, err error) {
	limit := q.Limit
	if limit <= 0 {
		limit = defaultJobPage
	}
	limit = min(limit, maxJobPage)

	prefix := []byte(jobIdxAllPrefix)
	if q.HostID != "" {
		if err := validID(q.HostID); err != nil {
			return nil, "", fmt.Errorf("storage: list jobs: host: %w", err)
		}
		prefix = hostJobIdxPrefix(q.HostID)
	}
	// A reverse seek lands on the largest key <= the seek key, so start just
	// past every key with the prefix.
	seek := append(bytes.Clone(prefix), 0xFF)
	var after []byte
	if q.Cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(q.Cursor)
		if err != nil || len(c) <= len(prefix) || !bytes.HasPrefix(c, prefix) {
			return nil, "", fmt.Errorf("storage: list jobs: bad cursor: %w", ErrInvalid)
		}
		seek, after = c, c
	}

	jobs = make([]Job, 0, min(limit, 64))
	err = s.db.View(func(txn *badger.Txn) error {
		opts := badger.IteratorOptions{Reverse: true, Prefix: prefix} // index values are empty: no prefetch
		it := txn.NewIterator(opts)
		defer it.Close()
		var last []byte
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			k := it.Item().Key()
			if after != nil && bytes.Equal(k, after) {
				continue // the cursor entry itself was on the previous page
			}
			if len(jobs) == limit {
				// The page is full and the index has more entries.
				nextCursor = base64.RawURLEncoding.EncodeToString(last)
				return nil
			}
			id := string(k[bytes.LastIndexByte(k, '/')+1:])
			var j Job
			err := getJSON(txn, jobKey(id), &j)
			if errors.Is(err, ErrNotFound) {
				// Cannot happen (record and index are written in one
				// transaction); skip rather than fail the whole listing.
				s.log.Warn("job index entry without job record", "key", string(k))
				continue
			}
			if err != nil {
				return fmt.Errorf("job %s: %w", id, err)
			}
			if q.Status != "" && j.Status != q.Status {
				continue
			}
			jobs = append(jobs, j)
			last = it.Item().KeyCopy(last[:0])
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("storage: list jobs: %w", err)
	}
	return jobs, nextCursor, nil
}
