package storage

import (
	"bytes"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"path"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// IndexNode is one entry of a snapshot's tree in the browse index.
type IndexNode struct {
	Name  string    `json:"name"`
	Type  string    `json:"type"`
	Path  string    `json:"path"`
	Size  uint64    `json:"size,omitempty"`
	Mtime time.Time `json:"mtime,omitzero"`
	Mode  uint32    `json:"mode,omitempty"`
}

// IndexMeta describes a snapshot's index.
type IndexMeta struct {
	RepoID     string    `json:"repo_id"`
	SnapshotID string    `json:"snapshot_id"`
	JobID      string    `json:"job_id"`
	Complete   bool      `json:"complete"`
	Nodes      int       `json:"nodes"`
	Bytes      int64     `json:"bytes"`
	IndexedIn  float64   `json:"indexed_in_s"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// Index keys: snapidx/{repo}/{snapshot}/{parent dir}\x00{name}. The NUL
// separates a directory's children from deeper paths sharing its prefix
// ("/a" vs "/ab"); paths never contain NUL.
func indexPrefix(repo, snap string) []byte { return []byte("snapidx/" + repo + "/" + snap + "/") }

func indexDirPrefix(repo, snap, dir string) []byte {
	return append(indexPrefix(repo, snap), []byte(dir+"\x00")...)
}

func indexMetaKey(repo, snap string) []byte { return []byte("snapidxmeta/" + repo + "/" + snap) }

// PutIndexNodes writes nodes of a snapshot's index. Writing the same node
// twice is harmless, so a redelivered chunk is too.
func (s *Store) PutIndexNodes(repo, snap string, nodes []IndexNode) error {
	if err := validID(repo); err != nil {
		return fmt.Errorf("storage: index: %w", err)
	}
	if err := validID(snap); err != nil {
		return fmt.Errorf("storage: index: %w", err)
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, n := range nodes {
		dir := path.Dir(n.Path)
		v, err := json.Marshal(n)
		if err != nil {
			return err
		}
		if err := wb.Set(append(indexDirPrefix(repo, snap, dir), n.Name...), v); err != nil {
			return fmt.Errorf("storage: index: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("storage: index: %w", err)
	}
	// The chunk is acknowledged to the agent after this returns: make it
	// durable like every other write (see groupSync).
	return s.durable.wait()
}

// PutIndexMeta records the state of a snapshot's index.
func (s *Store) PutIndexMeta(m IndexMeta) error {
	key := indexMetaKey(m.RepoID, m.SnapshotID)
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, key, m) })
}

// GetIndexMeta returns the state of a snapshot's index, or ErrNotFound.
func (s *Store) GetIndexMeta(repo, snap string) (IndexMeta, error) {
	var m IndexMeta
	if err := s.get(indexMetaKey(repo, snap), &m); err != nil {
		return m, fmt.Errorf("storage: index meta: %w", err)
	}
	return m, nil
}

// ListIndexDir returns the children of dir, by name, after the cursor.
func (s *Store) ListIndexDir(repo, snap, dir string, cursor string, limit int) ([]IndexNode, string, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	prefix := indexDirPrefix(repo, snap, path.Clean("/"+dir))
	seek := prefix
	if cursor != "" {
		c, err := base64.RawURLEncoding.DecodeString(cursor)
		if err != nil || !bytes.HasPrefix(c, prefix) {
			return nil, "", fmt.Errorf("storage: bad cursor: %w", ErrInvalid)
		}
		seek = append(c, 0) // strictly after the last one returned
	}
	out := []IndexNode{}
	var next string
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchSize = min(limit, 100)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(seek); it.ValidForPrefix(prefix); it.Next() {
			if len(out) == limit {
				next = base64.RawURLEncoding.EncodeToString(append(prefix, out[len(out)-1].Name...))
				return nil
			}
			var n IndexNode
			if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &n) }); err != nil {
				return err
			}
			out = append(out, n)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("storage: list index: %w", err)
	}
	return out, next, nil
}

// DropIndex deletes a snapshot's index (after it was forgotten). The meta
// record goes first, so the snapshot stops being browsable at once; the
// nodes follow in batches. Not DropPrefix: it blocks every other writer
// while it runs (their commits fail), and agents' messages are being stored
// meanwhile.
func (s *Store) DropIndex(repo, snap string) error {
	if err := validID(repo); err != nil {
		return err
	}
	if err := validID(snap); err != nil {
		return err
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Delete(indexMetaKey(repo, snap)) }); err != nil {
		return fmt.Errorf("storage: drop index: %w", err)
	}
	prefix := indexPrefix(repo, snap)
	for {
		var keys [][]byte
		err := s.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = prefix
			opts.PrefetchValues = false
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Rewind(); it.Valid() && len(keys) < dropBatch; it.Next() {
				keys = append(keys, it.Item().KeyCopy(nil))
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("storage: drop index: %w", err)
		}
		if len(keys) == 0 {
			return nil
		}
		if err := s.update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return fmt.Errorf("storage: drop index: %w", err)
		}
	}
}

// dropBatch keeps each deletion transaction well under Badger's size limit.
const dropBatch = 5000

// IndexSize sums the bytes of a snapshot's index entries (keys and values).
func (s *Store) IndexSize(repo, snap string) (int64, error) {
	var n int64
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = indexPrefix(repo, snap)
		opts.PrefetchValues = false
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			n += int64(len(it.Item().Key())) + it.Item().ValueSize()
		}
		return nil
	})
	return n, err
}
