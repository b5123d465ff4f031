package storage

import (
	"bufio"
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"

	"github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/pb"
	"google.golang.org/protobuf/proto"
)

// maxPendingLoadWrites bounds the write batches Load keeps in flight.
const maxPendingLoadWrites = 256

// Load restores a backup written by Backup into this store, which must be
// fresh: opened on an empty directory, holding nothing but the metadata Open
// writes. Open the fresh store with the master key of the store the backup
// came from (copy that master.key into the directory first): Load checks
// the restored key check against it and fails with a clear error when the
// key is another one, since the repository secrets in the backup could not
// be opened.
//
// Nothing else may use the store during Load. On error the store is in an
// undefined state: close it and remove its directory.
//
// Why loading over a freshly opened store is sound: Backup keeps each
// record's versions, and Badger's Load writes them back with those
// versions. The fresh store's own two metadata records were committed at
// version 1, the lowest there is, so the backup's copies (version 1 or
// later) replace or supersede them.
func (s *Store) Load(r io.Reader) error {
	own, err := s.checkFresh()
	if err != nil {
		return err
	}
	if err := s.db.Load(r, maxPendingLoadWrites); err != nil {
		return fmt.Errorf("storage: load: %w", err)
	}
	var (
		schema int
		check  []byte
	)
	err = s.db.View(func(txn *badger.Txn) error {
		raw, err := getRaw(txn, []byte(metaSchemaKey))
		if err != nil {
			return fmt.Errorf("schema version: %w", err)
		}
		if schema, err = strconv.Atoi(string(raw)); err != nil {
			return fmt.Errorf("bad schema version %q: %w", raw, err)
		}
		if check, err = getRaw(txn, []byte(metaKeyCheckKey)); err != nil {
			return fmt.Errorf("master key check: %w", err)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: load: the backup is incomplete: %w", err)
	}
	if bytes.Equal(check, own) {
		// Every store has a key check, sealed with a random nonce: a
		// backup of one always brings its own.
		return errors.New("storage: load: the backup holds no restic-manager store (it is empty or from another program)")
	}
	if schema > schemaVersion {
		return fmt.Errorf("storage: load: the backup has schema version %d but this build supports up to %d: %w",
			schema, schemaVersion, errSchemaTooNew)
	}
	if err := s.verifyKeyCheck(check); err != nil {
		return fmt.Errorf("storage: load: the master key is not the one of the store this backup was taken from (copy its master.key): %w", err)
	}
	// Make the restore durable before anyone reports success.
	if err := s.durable.syncAll(); err != nil {
		return fmt.Errorf("storage: load: %w", err)
	}
	return nil
}

var errNotFresh = errors.New("store is not empty")

// checkFresh fails unless the store holds only the metadata Open writes,
// and returns the fresh store's own key check.
func (s *Store) checkFresh() (check []byte, err error) {
	err = s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: false})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			switch k := string(it.Item().Key()); k {
			case metaSchemaKey:
			case metaKeyCheckKey:
				if check, err = it.Item().ValueCopy(nil); err != nil {
					return err
				}
			default:
				return fmt.Errorf("storage: load: refusing to load over existing records (found %q): %w: %w", k, errNotFresh, ErrInvalid)
			}
		}
		return nil
	})
	return check, err
}

// CheckBackup reads a backup written by Backup (Badger's format: frames of
// a little-endian uint64 length and a protobuf KVList) to its end and
// returns how many records it holds. A stream cut off inside a frame, a
// frame that does not decode, and a stream without the store's metadata
// (empty, or another program's database) are refused. A stream cut exactly
// between two frames cannot be told from a whole one by its bytes alone.
func CheckBackup(r io.Reader) (int, error) {
	br := bufio.NewReaderSize(r, 1<<20)
	var (
		n            int
		schema, keyc bool
		buf          []byte
	)
	for {
		var sz uint64
		err := binary.Read(br, binary.LittleEndian, &sz)
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			return 0, fmt.Errorf("storage: backup is truncated: %w", err)
		}
		// Badger sends batches of a few MiB; this only stops a corrupt
		// length from allocating the machine's memory.
		if sz > 1<<30 {
			return 0, fmt.Errorf("storage: backup is corrupt: a frame of %d bytes", sz)
		}
		if uint64(cap(buf)) < sz {
			buf = make([]byte, sz)
		}
		buf = buf[:sz]
		if _, err := io.ReadFull(br, buf); err != nil {
			return 0, fmt.Errorf("storage: backup is truncated: %w", err)
		}
		var list pb.KVList
		if err := proto.Unmarshal(buf, &list); err != nil {
			return 0, fmt.Errorf("storage: backup is corrupt: %w", err)
		}
		for _, kv := range list.Kv {
			switch string(kv.Key) {
			case metaSchemaKey:
				schema = true
			case metaKeyCheckKey:
				keyc = true
			}
			n++
		}
	}
	if !schema || !keyc {
		return 0, errors.New("storage: the backup holds no restic-manager store (its metadata is missing)")
	}
	return n, nil
}

// IsLocked reports whether Open failed because another process (a running
// server) has the database open. Badger has no sentinel error for its
// directory lock, so this matches its message; a test covers it.
func IsLocked(err error) bool {
	return err != nil && strings.Contains(err.Error(), "Another process is using this Badger database")
}
