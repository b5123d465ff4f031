package storage

import (
	"errors"
	"sync"

	"github.com/dgraph-io/badger/v4"
)

// maxJobBatch caps the writes one transaction carries.
const maxJobBatch = 128

// maxJobBatches is how many batches may be in flight at once: each waits
// for Badger's writer and, on a busy machine, for the scheduler, and one
// at a time left updates queueing behind those waits (10,000 agents).
// Batches that write the same job conflict and are rerun; agents send one
// job's reports one after another, so that is rare.
const maxJobBatches = 4

// jobBatch groups the writes of concurrent UpdateJob calls into one
// transaction. Each agent message (progress, result) was a transaction of
// its own: a read timestamp that waits for every earlier commit, a commit
// request through Badger's single writer, a conflict check. With thousands
// of agents reporting, those per-transaction costs capped ingest; one
// transaction for everything that arrived meanwhile pays them once.
//
// The callers read, decode, modify and encode in parallel; the batch only
// checks that each job is still the version its caller read (else that
// caller reads again) and writes it. Every caller still waits for a sync
// that began after its batch's commit before returning.
type jobBatch struct {
	mu      sync.Mutex
	pending []*jobOp
	running int // goroutines running batches
}

type jobOp struct {
	key   []byte
	ver   uint64 // the version the caller read
	val   []byte // the record to write
	stale bool   // the job changed since it was read: read again
	err   error
	done  chan struct{}
}

// commitJob queues op and waits until a batch ran it.
func (s *Store) commitJob(op *jobOp) {
	b := &s.jobs
	b.mu.Lock()
	b.pending = append(b.pending, op)
	if b.running < maxJobBatches {
		b.running++
		b.mu.Unlock()
		s.runJobBatches()
	} else {
		b.mu.Unlock()
	}
	<-op.done
}

// runJobBatches runs one batch, then hands the queue to a new goroutine if
// more arrived meanwhile: the caller (an agent's message) must not wait
// on other agents' updates for longer than its own batch.
func (s *Store) runJobBatches() {
	b := &s.jobs
	b.mu.Lock()
	if len(b.pending) == 0 {
		// Another batch took them.
		b.running--
		b.mu.Unlock()
		return
	}
	n := min(len(b.pending), maxJobBatch)
	batch := make([]*jobOp, n)
	copy(batch, b.pending)
	b.pending = append(b.pending[:0], b.pending[n:]...)
	b.mu.Unlock()

	s.runJobBatch(batch)

	b.mu.Lock()
	if len(b.pending) == 0 {
		b.running--
		b.mu.Unlock()
		return
	}
	b.mu.Unlock()
	go s.runJobBatches()
}

// runJobBatch writes batch in one transaction, retrying it on a conflict;
// if the batch is too large for one transaction, each write goes alone.
func (s *Store) runJobBatch(batch []*jobOp) {
	defer func() {
		for _, op := range batch {
			close(op.done)
		}
	}()
	err := s.writeJobs(batch)
	if errors.Is(err, badger.ErrTxnTooBig) && len(batch) > 1 {
		for _, op := range batch {
			switch err := s.writeJobs([]*jobOp{op}); {
			case errors.Is(err, badger.ErrConflict):
				op.stale, op.err = true, nil
			case err != nil:
				op.err = err
			}
		}
		return
	}
	for _, op := range batch {
		switch {
		case errors.Is(err, badger.ErrConflict):
			// Lost every round to other writers of these jobs: each
			// caller reads its job again.
			op.stale, op.err = true, nil
		case err != nil:
			op.err = err
		}
	}
}

func (s *Store) writeJobs(batch []*jobOp) error {
	var err error
	for range maxTxnRetries {
		err = s.db.Update(func(txn *badger.Txn) error {
			written := make(map[string]bool, len(batch))
			for _, op := range batch {
				op.stale, op.err = false, nil
				if written[string(op.key)] {
					// An earlier op of this batch changed the job since
					// this one read it (its pending write would read back
					// with the transaction's read version, which can equal
					// the version this one read).
					op.stale = true
					continue
				}
				item, err := txn.Get(op.key)
				switch {
				case errors.Is(err, badger.ErrKeyNotFound):
					op.err = ErrNotFound // deleted since it was read
					continue
				case err != nil:
					return err
				case item.Version() != op.ver:
					op.stale = true // changed since it was read
					continue
				}
				if err := txn.Set(op.key, op.val); err != nil {
					return err
				}
				written[string(op.key)] = true
			}
			return nil
		})
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}
