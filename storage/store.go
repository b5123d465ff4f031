// Package storage keeps every record the console owns in Badger: hosts,
// repositories, jobs (with a per-host time-ordered index), users, sessions,
// API and enrolment tokens. Values are versioned JSON; repository secrets are
// sealed under a master key kept in the data directory.
//
// Layout of dir:
//
//	dir/master.key  32 random bytes, mode 0600 (not part of Backup)
//	dir/db/         the Badger database
package storage

import (
	"crypto/cipher"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ErrInvalid is returned for arguments the store cannot key on: empty IDs or
// IDs containing '/', token hashes that are not SHA-256 sized, and list
// cursors that were not produced by the same query.
var ErrInvalid = errors.New("invalid argument")

const (
	// schemaVersion is the layout version written to meta/schema. A store
	// written by a newer build is refused rather than misread.
	schemaVersion = 1

	gcInterval     = 10 * time.Minute
	gcDiscardRatio = 0.5
	// gcMaxRounds bounds one GC pass; each successful round rewrites one
	// value-log file.
	gcMaxRounds = 8

	// maxTxnRetries bounds reruns of a transaction that lost an optimistic
	// concurrency race (badger.ErrConflict).
	maxTxnRetries = 5
)

// Store is the console's record store. It is safe for concurrent use.
type Store struct {
	db   *badger.DB
	aead cipher.AEAD // AES-256-GCM under the master key, random nonces
	// deriveKey is an HMAC key derived from the master key, for secrets the
	// console can recompute instead of storing (DeriveSecret).
	deriveKey []byte
	log       *slog.Logger
	durable   *groupSync // makes committed transactions durable

	// locks serialises read-modify-write of one record within the process;
	// see UpdateJob.
	locks keyLocks
	// jobs groups concurrent UpdateJob calls (see jobBatch).
	jobs jobBatch

	done      chan struct{} // closed by Close to stop background work
	gcKick    chan uint64   // compaction requests; see requestCompaction
	wg        sync.WaitGroup
	closeOnce sync.Once
	closeErr  error
}

// Open opens (creating if needed) the store under dir. dir/master.key is
// created with mode 0600 on first use and holds the 32-byte master key.
func Open(dir string) (*Store, error) {
	if dir == "" {
		return nil, fmt.Errorf("storage: open: empty directory: %w", ErrInvalid)
	}
	dbDir := filepath.Join(dir, "db")
	if err := os.MkdirAll(dbDir, 0o700); err != nil {
		return nil, fmt.Errorf("storage: open: %w", err)
	}
	keyPath := filepath.Join(dir, masterKeyFile)
	// Validate an existing key before touching the database, so a key with
	// bad permissions stops startup early.
	key, err := readMasterKey(keyPath)
	if err != nil {
		return nil, err
	}

	log := slog.Default().With("component", "storage")
	opts := badger.DefaultOptions(dbDir).
		WithLogger(badgerLogger{log}).
		// The console acknowledges MQTT messages only once they are stored,
		// so a committed write must survive a crash: update syncs before it
		// returns, once for every transaction committed meanwhile (see
		// groupSync; Badger's SyncWrites syncs once per transaction).
		WithSyncWrites(false).
		// The record set is small; keep idle memory low instead of using
		// Badger's server-sized defaults (64 MiB memtables, 256 MiB cache).
		WithMemTableSize(8 << 20).
		WithNumMemtables(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithNumCompactors(2).
		WithValueLogFileSize(64 << 20).
		WithMetricsEnabled(false)
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("storage: open database %s: %w", dbDir, err)
	}

	s := &Store{db: db, durable: newGroupSync(db, dbDir), log: log, done: make(chan struct{}), gcKick: make(chan uint64, 1)}
	if err := s.init(keyPath, key); err != nil {
		if cerr := db.Close(); cerr != nil {
			log.Warn("closing database after failed open", "err", cerr)
		}
		return nil, err
	}
	s.wg.Add(1)
	go s.gcLoop()
	return s, nil
}

// init checks the schema version and the master key against the database,
// creating both on a fresh store.
func (s *Store) init(keyPath string, key []byte) error {
	var (
		schema     int
		haveSchema bool
		check      []byte
	)
	err := s.db.View(func(txn *badger.Txn) error {
		raw, err := getRaw(txn, []byte(metaSchemaKey))
		switch {
		case errors.Is(err, ErrNotFound):
		case err != nil:
			return err
		default:
			if schema, err = strconv.Atoi(string(raw)); err != nil {
				return fmt.Errorf("bad schema version %q: %w", raw, err)
			}
			haveSchema = true
		}
		check, err = getRaw(txn, []byte(metaKeyCheckKey))
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: open: read metadata: %w", err)
	}
	if haveSchema && schema > schemaVersion {
		return fmt.Errorf("storage: open: store has schema version %d but this build supports up to %d; refusing to open it: %w",
			schema, schemaVersion, errSchemaTooNew)
	}

	if key == nil {
		if check != nil {
			// Creating a fresh key now would orphan every sealed secret.
			return fmt.Errorf("storage: open: %s is missing but the store holds secrets sealed under it; restore the original key file: %w",
				keyPath, errMasterKeyMismatch)
		}
		if key, err = createMasterKey(keyPath); err != nil {
			return err
		}
	}
	s.deriveKey = deriveKey(key)
	if s.aead, err = newAEAD(key); err != nil {
		return fmt.Errorf("storage: open: %w", err)
	}
	clear(key)

	if check != nil {
		if err := s.verifyKeyCheck(check); err != nil {
			return fmt.Errorf("storage: open: %s does not match this store (replaced or corrupted?): %w", keyPath, err)
		}
	}
	if haveSchema && check != nil {
		return nil
	}
	err = s.update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(metaSchemaKey), []byte(strconv.Itoa(schemaVersion))); err != nil {
			return err
		}
		if check != nil {
			return nil
		}
		return txn.Set([]byte(metaKeyCheckKey), s.newKeyCheck())
	})
	if err != nil {
		return fmt.Errorf("storage: open: write metadata: %w", err)
	}
	return nil
}

// Close flushes and closes the database. Safe to call twice.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		close(s.done)
		// Wait for the GC goroutine so it never runs against a closed DB.
		s.wg.Wait()
		if err := s.db.Close(); err != nil {
			s.closeErr = fmt.Errorf("storage: close: %w", err)
		}
	})
	return s.closeErr
}

// Backup writes an online, consistent backup of the whole database to w (the
// format of badger.DB.Backup, restorable with badger.DB.Load). The master key
// is not included: keep dir/master.key alongside, or the repository secrets
// in the backup cannot be opened.
func (s *Store) Backup(w io.Writer) error {
	if _, err := s.db.Backup(w, 0); err != nil {
		return fmt.Errorf("storage: backup: %w", err)
	}
	return nil
}

// gcLoop periodically reclaims value-log space until Close, and compacts
// the tree once after a large purge (see requestCompaction).
func (s *Store) gcLoop() {
	defer s.wg.Done()
	t := time.NewTimer(gcInterval)
	defer t.Stop()
	var pending uint64 // a purge's commit version, waiting to be compacted away
	for {
		select {
		case <-s.done:
			return
		case <-t.C:
		case v := <-s.gcKick:
			pending = max(pending, v)
		}
		compact := pending != 0 && s.flushedPast(pending)
		if compact {
			pending = 0
		}
		if err := s.collectGarbage(compact); err != nil {
			s.log.Warn("garbage collection failed", "err", err)
		}
		next := gcInterval
		if pending != 0 {
			next = gcRecheck
		}
		t.Stop()
		t.Reset(next)
	}
}

// update runs fn in a read-write transaction. Badger uses optimistic
// concurrency: a transaction whose reads were overwritten by a concurrent
// commit fails with ErrConflict and is safe to rerun from scratch, so fn must
// not keep state across calls (reset captured results at its start).
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	if err := s.updateUnsynced(fn); err != nil {
		return err
	}
	return s.durable.wait()
}

// updateUnsynced is update without the wait for durability: a caller that
// commits many transactions in a row (UpdateSchedulesMany) waits once, after
// the last (s.durable.wait), instead of once per transaction. It returns nil
// for errUnchanged: what fn read may still be a commit not yet synced, which
// the caller's own wait covers.
func (s *Store) updateUnsynced(fn func(txn *badger.Txn) error) error {
	var err error
	for range maxTxnRetries {
		err = s.db.Update(fn)
		if err == nil || errors.Is(err, errUnchanged) {
			return nil
		}
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
	return err
}

// insert stores v under key unless the key already exists (ErrExists). The
// existence check is inside the transaction, so of two racing inserts the
// loser conflicts, reruns and sees ErrExists.
func (s *Store) insert(key []byte, v any) error {
	return s.update(func(txn *badger.Txn) error {
		if err := absent(txn, key); err != nil {
			return err
		}
		return setJSON(txn, key, v)
	})
}

// get decodes the record at key into v.
func (s *Store) get(key []byte, v any) error {
	return s.db.View(func(txn *badger.Txn) error { return getJSON(txn, key, v) })
}

// modify runs a read-modify-write of the record at key. Updates of the same
// key are serialised in-process first: Badger would detect the race anyway,
// but under contention (a burst of progress reports for one job) optimistic
// retries can be exhausted, while waiting on a mutex always succeeds.
func (s *Store) modify(key []byte, fn func(txn *badger.Txn) error) error {
	unlock := s.locks.lock(string(key))
	defer unlock()
	return s.update(fn)
}

// keyLocks is a set of mutexes, one per key currently in use. Per-key (not
// striped) locks matter: with stripes, an UpdateJob callback that calls
// UpdateHost could deadlock whenever the two keys hashed alike.
type keyLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	mu   sync.Mutex
	refs int // holders and waiters; the entry is dropped at zero
}

func (l *keyLocks) lock(key string) (unlock func()) {
	l.mu.Lock()
	if l.m == nil {
		l.m = make(map[string]*keyLock)
	}
	e := l.m[key]
	if e == nil {
		e = &keyLock{}
		l.m[key] = e
	}
	e.refs++
	l.mu.Unlock()

	e.mu.Lock()
	return func() {
		e.mu.Unlock()
		l.mu.Lock()
		e.refs--
		if e.refs == 0 {
			delete(l.m, key)
		}
		l.mu.Unlock()
	}
}

// badgerLogger routes Badger's log output to slog at warning level and
// above; its info output is chatty (every compaction and flush).
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, args ...any) {
	b.l.Error(strings.TrimSpace(fmt.Sprintf(f, args...)))
}

func (b badgerLogger) Warningf(f string, args ...any) {
	b.l.Warn(strings.TrimSpace(fmt.Sprintf(f, args...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}

// Size is the store's size in bytes: its LSM tables, which hold every
// record (values under Badger's 1 MiB value threshold, which all records
// are, live in the tables). The memtable files (2 x 8 MiB, written as a
// log) and the value log add a roughly constant amount on disk.
//
// badger.DB.Size is not used: it reads Badger's metrics, which the store
// disables, and always returned 0.
func (s *Store) Size() int64 {
	var n int64
	for _, l := range s.db.Levels() {
		n += l.Size
	}
	return n
}
