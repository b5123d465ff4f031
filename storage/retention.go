package storage

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// RetentionPolicy says how long records that only grow are kept. A zero
// duration keeps that kind of record forever.
type RetentionPolicy struct {
	// Jobs: a terminal job whose end (its creation, if it never started)
	// lies further back is deleted with its index entries and its
	// scheduled-fire dedup key. The job record carries its output, stderr
	// tail, summary and last progress, so they go with it.
	Jobs time.Duration
	// Audit entries older than this are deleted.
	Audit time.Duration
	// ResolvedAlerts: resolved alerts are deleted this long after they
	// resolved, unless a silence on them is still in force.
	ResolvedAlerts time.Duration
	// ExpiredSessions: login sessions are deleted this long after they
	// expired. An expired session is refused (and deleted) when it is
	// used, but one that is never used again would stay forever.
	ExpiredSessions time.Duration
	// ExpiredEnrollTokens: enrolment tokens never used are deleted this
	// long after they expired. Until then an agent that tries one is told
	// that it expired rather than that it is unknown.
	ExpiredEnrollTokens time.Duration
}

// Default retention periods.
//
//   - Jobs, 180 days: two quarters of history is what the host page, the
//     duration charts and "when did this start failing" questions use, and
//     it matches the 180 points of a repository's size history. Snapshots
//     themselves live in the repository under its own forget policy; the
//     job record is only the console's log of how they were made.
//   - Audit, 1 year: the audit log is the security record, and a year is
//     the common minimum for audit trails (PCI DSS 10.5.1, for one). Its
//     entries are small (~300 bytes), so a year costs little.
//   - Resolved alerts, 90 days: an alert record exists per (rule, subject)
//     pair and is reused when it fires again, so these only accumulate for
//     subjects that went away (deleted hosts and repositories).
//   - Expired sessions, 1 day after expiry: they can never be used again;
//     the day only keeps the sweep clear of clocks that disagree.
//   - Expired enrolment tokens, 7 days after expiry: long enough for
//     whoever runs a stale install command that week to be told why.
const (
	DefaultJobRetention         = 180 * 24 * time.Hour
	DefaultAuditRetention       = 365 * 24 * time.Hour
	DefaultAlertRetention       = 90 * 24 * time.Hour
	DefaultSessionRetention     = 24 * time.Hour
	DefaultEnrollTokenRetention = 7 * 24 * time.Hour
)

// DefaultRetention returns the default policy.
func DefaultRetention() RetentionPolicy {
	return RetentionPolicy{Jobs: DefaultJobRetention, Audit: DefaultAuditRetention, ResolvedAlerts: DefaultAlertRetention,
		ExpiredSessions: DefaultSessionRetention, ExpiredEnrollTokens: DefaultEnrollTokenRetention}
}

// RetentionStats reports what one ApplyRetention run did.
type RetentionStats struct {
	Jobs   int // jobs deleted (each with its 2 index keys and fire key)
	Keys   int // keys deleted in all
	Audit  int // audit entries deleted
	Alerts int // resolved alerts deleted
	// Sessions and EnrollTokens count expired ones deleted.
	Sessions, EnrollTokens int
	// Kept counts jobs past the age limit that stay: not terminal yet, or
	// still a host's last job, backup or success, or a repository's last
	// check.
	Kept    int
	Batches int // write transactions committed
	// Bytes approximates the stored size of the deleted records.
	Bytes int64
	Took  time.Duration
}

// retentionBatch bounds the jobs (about 4 deletes each) or entries removed
// in one transaction. Small batches keep each commit short, so writers
// (ingest) wait on at most one small fsync'd commit, and stay far below
// Badger's transaction limit (15% of the 8 MiB memtable); a batch that hits
// ErrTxnTooBig anyway is split.
const retentionBatch = 256

const (
	// compactFraction: a purge that deleted at least this fraction of the
	// store's bytes asks for a full compaction (see requestCompaction).
	// Smaller purges, such as each day's expiring jobs, are left to
	// Badger's own compactions, which pick up the space as the store is
	// written; flattening a large store every day would rewrite all of it.
	compactFraction = 0.2
	// gcRecheck is how often the GC loop looks whether a purge's deletions
	// have reached the disk yet.
	gcRecheck = time.Minute
)

// ApplyRetention deletes what p says has expired at now. It is safe to run
// while the store is in use: every deletion re-reads the record in the
// deleting transaction, so a concurrent update either wins (the record is
// re-checked) or finds it gone. A second run with nothing new to expire
// deletes nothing.
func (s *Store) ApplyRetention(ctx context.Context, p RetentionPolicy, now time.Time) (RetentionStats, error) {
	start := time.Now()
	var st RetentionStats
	if p.Jobs > 0 {
		if err := s.expireJobs(ctx, now.Add(-p.Jobs), &st); err != nil {
			return st, fmt.Errorf("storage: retention: jobs: %w", err)
		}
	}
	if p.Audit > 0 {
		if err := s.expireAudit(ctx, now.Add(-p.Audit), &st); err != nil {
			return st, fmt.Errorf("storage: retention: audit: %w", err)
		}
	}
	if p.ResolvedAlerts > 0 {
		if err := s.expireAlerts(ctx, now.Add(-p.ResolvedAlerts), now, &st); err != nil {
			return st, fmt.Errorf("storage: retention: alerts: %w", err)
		}
	}
	if p.ExpiredSessions > 0 {
		n, err := expireByDeadline(ctx, s, sessPrefix, func(v Session) time.Time { return v.ExpiresAt }, now.Add(-p.ExpiredSessions), &st)
		st.Sessions += n
		if err != nil {
			return st, fmt.Errorf("storage: retention: sessions: %w", err)
		}
	}
	if p.ExpiredEnrollTokens > 0 {
		n, err := expireByDeadline(ctx, s, enrollPrefix, func(v EnrollToken) time.Time { return v.ExpiresAt }, now.Add(-p.ExpiredEnrollTokens), &st)
		st.EnrollTokens += n
		if err != nil {
			return st, fmt.Errorf("storage: retention: enrolment tokens: %w", err)
		}
	}
	st.Took = time.Since(start)
	// Bytes counts records uncompressed and Size the compressed tables
	// (deleted data included until compacted), which errs towards
	// compacting.
	if st.Keys > 0 && float64(st.Bytes) >= compactFraction*float64(s.Size()) {
		s.requestCompaction()
	}
	return st, nil
}

// pinnedJobs returns the jobs the dashboard and repository pages link to.
//
// They are read before the purge, outside its transactions. That is sound
// because a job only becomes a host's last job (or a repository's last
// check) when it ends, and then its end time is recent, so it is not old
// enough to be a candidate in the same run.
func (s *Store) pinnedJobs() (map[string]bool, error) {
	pins := map[string]bool{}
	err := s.db.View(func(txn *badger.Txn) error {
		err := eachRecord(txn, hostPrefix, func(h *Host) {
			for _, lb := range []*LastBackup{h.LastJob, h.LastBackup, h.LastSuccess} {
				if lb != nil && lb.JobID != "" {
					pins[lb.JobID] = true
				}
			}
			if h.LastDrill != nil && h.LastDrill.JobID != "" {
				pins[h.LastDrill.JobID] = true
			}
		})
		if err != nil {
			return err
		}
		return eachRecord(txn, repoPrefix, func(r *Repo) {
			if r.Health != nil && r.Health.LastCheck != nil && r.Health.LastCheck.JobID != "" {
				pins[r.Health.LastCheck.JobID] = true
			}
		})
	})
	return pins, err
}

// eachRecord decodes every record under prefix into a fresh T and calls fn.
func eachRecord[T any](txn *badger.Txn, prefix string, fn func(*T)) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true, PrefetchSize: 100})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		var v T
		if err := it.Item().Value(func(b []byte) error { return decode(b, &v) }); err != nil {
			return fmt.Errorf("%s: %w", it.Item().Key(), err)
		}
		fn(&v)
	}
	return nil
}

// jobExpired reports whether j may be deleted under cutoff.
func jobExpired(j Job, cutoff time.Time, pins map[string]bool) bool {
	if !TerminalStatus(j.Status) || pins[j.ID] {
		return false
	}
	end := j.EndedAt
	if end.IsZero() || end.Before(j.CreatedAt) {
		end = j.CreatedAt
	}
	return end.Before(cutoff)
}

// expireJobs walks the global index oldest first. Index order is creation
// order, and a job ends after it is created, so the walk stops at the first
// entry created after the cutoff: a run reads only what may expire (plus the
// few old jobs that are kept), not the whole history.
func (s *Store) expireJobs(ctx context.Context, cutoff time.Time, st *RetentionStats) error {
	pins, err := s.pinnedJobs()
	if err != nil {
		return err
	}
	prefix := []byte(jobIdxAllPrefix)
	stop := []byte(jobIdxAllPrefix + idxTime(cutoff))
	seek := prefix
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		// Read the next batch of candidates in a snapshot, then delete them
		// in a short write transaction of their own.
		var idx [][]byte // global index keys
		var next []byte
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
				k := it.Item().Key()
				if bytes.Compare(k, stop) >= 0 {
					return nil
				}
				if len(idx) == retentionBatch {
					next = it.Item().KeyCopy(nil)
					return nil
				}
				idx = append(idx, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return err
		}
		if len(idx) == 0 {
			return nil
		}
		if err := s.deleteJobs(idx, cutoff, pins, st); err != nil {
			return err
		}
		if next == nil {
			return nil
		}
		seek = next
	}
}

// deleteJobs deletes the expired ones among the jobs of the global index
// keys idx, splitting the batch if Badger finds it too big.
func (s *Store) deleteJobs(idx [][]byte, cutoff time.Time, pins map[string]bool, st *RetentionStats) error {
	var jobs, keys, kept int
	var size int64
	err := s.update(func(txn *badger.Txn) error {
		jobs, keys, kept, size = 0, 0, 0, 0
		for _, ik := range idx {
			id := string(ik[bytes.LastIndexByte(ik, '/')+1:])
			var j Job
			item, err := txn.Get(jobKey(id))
			if err == nil {
				err = item.Value(func(b []byte) error { return decode(b, &j) })
			} else if errors.Is(err, badger.ErrKeyNotFound) {
				err = ErrNotFound
			}
			if errors.Is(err, ErrNotFound) {
				// An index entry without its record (ListJobs skips it
				// with a warning): drop the entry, the only key left.
				s.log.Warn("retention: dropping job index entry without a job record", "key", string(ik))
				if err := txn.Delete(ik); err != nil {
					return err
				}
				keys++
				continue
			}
			if err != nil {
				return fmt.Errorf("job %s: %w", id, err)
			}
			if !jobExpired(j, cutoff, pins) {
				kept++
				continue
			}
			perHost, global := jobIndexKeys(j)
			del := [][]byte{jobKey(id), perHost, global}
			if j.ScheduleID != "" && !j.ScheduledAt.IsZero() {
				fk := fireJobKey(j.fireHost(), j.ScheduleID, j.ScheduledAt)
				// Only the key that names this job: a fire that made another
				// job (cannot happen, but cheap to check) keeps its key.
				if v, err := getRaw(txn, fk); err == nil && string(v) == id {
					del = append(del, fk)
				} else if err != nil && !errors.Is(err, ErrNotFound) {
					return err
				}
			}
			for _, k := range del {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			jobs++
			keys += len(del)
			size += item.EstimatedSize()
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) && len(idx) > 1 {
		half := len(idx) / 2
		if err := s.deleteJobs(idx[:half], cutoff, pins, st); err != nil {
			return err
		}
		return s.deleteJobs(idx[half:], cutoff, pins, st)
	}
	if err != nil {
		return err
	}
	st.Jobs += jobs
	st.Keys += keys
	st.Kept += kept
	st.Bytes += size
	st.Batches++
	return nil
}

// expireAudit deletes audit entries older than cutoff. Audit keys start with
// the entry's time (see AppendAudit), so the old ones are a key range.
func (s *Store) expireAudit(ctx context.Context, cutoff time.Time, st *RetentionStats) error {
	prefix := []byte(auditPrefix)
	stop := []byte(auditPrefix + idxTime(cutoff))
	n, err := s.deleteRange(ctx, prefix, stop, st)
	st.Audit += n
	return err
}

// deleteRange deletes the keys with prefix that sort before stop, in
// batches of retentionBatch.
func (s *Store) deleteRange(ctx context.Context, prefix, stop []byte, st *RetentionStats) (int, error) {
	total := 0
	for {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		var keys [][]byte
		err := s.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
			defer it.Close()
			for it.Rewind(); it.ValidForPrefix(prefix) && len(keys) < retentionBatch; it.Next() {
				k := it.Item().Key()
				if bytes.Compare(k, stop) >= 0 {
					break
				}
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil || len(keys) == 0 {
			return total, err
		}
		err = s.update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += len(keys)
		st.Keys += len(keys)
		st.Batches++
	}
}

// expireAlerts deletes resolved alerts that resolved before cutoff and are
// not silenced past now (a silence outlives the alert's resolution: it is
// what keeps the next firing quiet).
func (s *Store) expireAlerts(ctx context.Context, cutoff, now time.Time, st *RetentionStats) error {
	expired := func(a Alert) bool {
		return a.State == AlertResolved && !a.ResolvedAt.IsZero() && a.ResolvedAt.Before(cutoff) && !a.SilencedUntil.After(now)
	}
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		return eachRecord(txn, "alert/", func(a *Alert) {
			if expired(*a) {
				ids = append(ids, a.ID)
			}
		})
	})
	if err != nil {
		return err
	}
	for len(ids) > 0 {
		if err := ctx.Err(); err != nil {
			return err
		}
		batch := ids[:min(len(ids), retentionBatch)]
		ids = ids[len(batch):]
		var n int
		err := s.update(func(txn *badger.Txn) error {
			n = 0
			for _, id := range batch {
				// Re-read: the alert may have fired again since the scan.
				var a Alert
				err := getJSON(txn, alertKey(id), &a)
				if errors.Is(err, ErrNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				if !expired(a) {
					continue
				}
				if err := txn.Delete(alertKey(id)); err != nil {
					return err
				}
				n++
			}
			return nil
		})
		if err != nil {
			return err
		}
		st.Alerts += n
		st.Keys += n
		st.Batches++
	}
	return nil
}

// expireByDeadline deletes the records under prefix whose deadline (their
// expiry) lies before cutoff. A record that does not decode is left alone
// (and logged): retention must never destroy what it cannot read.
func expireByDeadline[T any](ctx context.Context, s *Store, prefix string, deadline func(T) time.Time, cutoff time.Time, st *RetentionStats) (int, error) {
	expired := func(raw []byte) (bool, error) {
		var v T
		if err := decode(raw, &v); err != nil {
			return false, err
		}
		return deadline(v).Before(cutoff), nil
	}
	var keys [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefix), PrefetchValues: true, PrefetchSize: 100})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			err := it.Item().Value(func(raw []byte) error {
				old, err := expired(raw)
				if old {
					keys = append(keys, it.Item().KeyCopy(nil))
				}
				return err
			})
			if err != nil {
				s.log.Warn("retention: skipping a record that does not decode", "key", string(it.Item().Key()), "err", err)
			}
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	total := 0
	for len(keys) > 0 {
		if err := ctx.Err(); err != nil {
			return total, err
		}
		batch := keys[:min(len(keys), retentionBatch)]
		keys = keys[len(batch):]
		var n int
		var size int64
		err := s.update(func(txn *badger.Txn) error {
			n, size = 0, 0
			for _, k := range batch {
				// Re-read: the record may have been replaced since the scan.
				item, err := txn.Get(k)
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				var old bool
				if err := item.Value(func(raw []byte) error {
					var err error
					old, err = expired(raw)
					return err
				}); err != nil || !old {
					continue
				}
				if err := txn.Delete(k); err != nil {
					return err
				}
				n++
				size += item.EstimatedSize()
			}
			return nil
		})
		if err != nil {
			return total, err
		}
		total += n
		st.Keys += n
		st.Bytes += size
		st.Batches++
	}
	return total, nil
}

// requestCompaction asks the GC loop to flatten the tree once the purge
// just committed has reached the disk.
//
// Job records are small, so Badger keeps them in its LSM tables (values
// under 1 MiB never go to the value log, so value-log GC alone frees
// nothing here). Deleted records leave the disk when compaction merges
// their tombstones into the last level, which Badger's size-driven
// compactions may not do for a long time after a purge. The tombstones
// first sit in the memtable; flattening before they are flushed to a table
// would rewrite the tree and drop nothing. Badger has no way to flush the
// memtable without blocking writers (DropPrefix makes concurrent writes
// fail with ErrBlockedWrites), so the loop waits until a table holds the
// purge's version: after 8 MiB more writes, or a restart.
func (s *Store) requestCompaction() {
	var v uint64
	_ = s.db.View(func(txn *badger.Txn) error { v = txn.ReadTs(); return nil })
	select {
	case s.gcKick <- v:
	default: // one is pending; its version is close enough
	}
}

// flushedPast reports whether some table holds a version >= v, that is,
// whether writes committed up to v have left the memtable.
func (s *Store) flushedPast(v uint64) bool {
	for _, t := range s.db.Tables() {
		if t.MaxVersion >= v {
			return true
		}
	}
	return false
}

// collectGarbage reclaims disk space: with compact, the LSM tree is
// flattened (every level merged into the lowest, dropping deleted and
// overwritten records); then the value log is collected.
func (s *Store) collectGarbage(compact bool) error {
	if compact {
		if err := s.flatten(); err != nil {
			return err
		}
	}
	for range gcMaxRounds {
		err := s.db.RunValueLogGC(gcDiscardRatio)
		if err != nil {
			// ErrNoRewrite: nothing worth collecting (the normal case).
			// ErrRejected: another GC running or the DB is closing.
			if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
				return nil
			}
			return fmt.Errorf("storage: value log GC: %w", err)
		}
		select {
		case <-s.done:
			return nil
		default:
		}
	}
	return nil
}

// flatten runs badger's Flatten, retrying its "Unable to fill tables": it
// races with a compaction Badger itself has just registered (seen right
// after Open) and succeeds a moment later.
func (s *Store) flatten() error {
	var err error
	for try := range 5 {
		if err = s.db.Flatten(1); err == nil {
			return nil
		}
		s.log.Debug("flatten: retrying", "try", try, "err", err)
		select {
		case <-s.done:
			return nil
		case <-time.After(time.Second):
		}
	}
	return fmt.Errorf("storage: compact: %w", err)
}
