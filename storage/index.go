package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
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
	Format     int       `json:"format,omitempty"` // indexFormat when written
}

// indexFormat is the layout of index entries below. An index of another
// format (format 1 had whole paths in its keys and JSON values, ~330 bytes a
// node, more the deeper the tree) is not complete: it is indexed again.
const indexFormat = 2

// Index keys: sx/{snapshot:8}{folder:12}{name}, value: the node's type, size,
// mtime and mode (encodeIndexValue). A folder's children are one key range,
// in name order, whatever the depth; the snapshot's entries are one prefix
// (for sizing and dropping it). A node costs its name and about 40 bytes,
// however long its path.
//
// snapshot is the first 8 bytes of sha256(repo, snapshot) and folder the
// first 12 of sha256(folder's path): hashes, so a chunk of nodes maps to its
// keys alone, in any order and again on redelivery. A collision (two
// snapshots, 2^-64 a pair; two folders of one snapshot, 2^-96) would mix
// two listings.
const indexKeyPrefix = "sx/"

// indexFormat1Prefix holds format-1 entries; DropIndex removes those too.
func indexFormat1Prefix(repo, snap string) []byte {
	return []byte("snapidx/" + repo + "/" + snap + "/")
}

func indexPrefix(repo, snap string) []byte {
	h := sha256.Sum256([]byte(repo + "\x00" + snap))
	return append([]byte(indexKeyPrefix), h[:8]...)
}

func indexDirPrefix(snapPrefix []byte, dir string) []byte {
	h := sha256.Sum256([]byte(dir))
	out := make([]byte, len(snapPrefix), len(snapPrefix)+12+32)
	copy(out, snapPrefix)
	return append(out, h[:12]...)
}

func indexMetaKey(repo, snap string) []byte { return []byte("snapidxmeta/" + repo + "/" + snap) }

// joinPath is a child's path in folder dir.
func joinPath(dir, name string) string {
	if dir == "/" {
		return "/" + name
	}
	return dir + "/" + name
}

// encodeIndexValue: flags (1: has mtime), type (length-prefixed), size,
// mode and mtime (Unix nanoseconds) as varints.
func encodeIndexValue(buf []byte, n IndexNode) []byte {
	var flags byte
	if !n.Mtime.IsZero() {
		flags |= 1
	}
	buf = append(buf, flags)
	buf = binary.AppendUvarint(buf, uint64(len(n.Type)))
	buf = append(buf, n.Type...)
	buf = binary.AppendUvarint(buf, n.Size)
	buf = binary.AppendUvarint(buf, uint64(n.Mode))
	if flags&1 != 0 {
		buf = binary.AppendVarint(buf, n.Mtime.UnixNano())
	}
	return buf
}

var errBadIndexValue = errors.New("storage: malformed index entry")

func decodeIndexValue(b []byte, n *IndexNode) error {
	if len(b) < 2 {
		return errBadIndexValue
	}
	flags := b[0]
	b = b[1:]
	l, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < l {
		return errBadIndexValue
	}
	n.Type = string(b[k : k+int(l)])
	b = b[k+int(l):]
	if n.Size, k = binary.Uvarint(b); k <= 0 {
		return errBadIndexValue
	}
	b = b[k:]
	mode, k := binary.Uvarint(b)
	if k <= 0 {
		return errBadIndexValue
	}
	n.Mode = uint32(mode)
	b = b[k:]
	n.Mtime = time.Time{}
	if flags&1 != 0 {
		ns, k := binary.Varint(b)
		if k <= 0 {
			return errBadIndexValue
		}
		n.Mtime = time.Unix(0, ns).UTC()
	}
	return nil
}

// PutIndexNodes writes nodes of a snapshot's index. Writing the same node
// twice is harmless, so a redelivered chunk is too.
func (s *Store) PutIndexNodes(repo, snap string, nodes []IndexNode) error {
	if err := validID(repo); err != nil {
		return fmt.Errorf("storage: index: %w", err)
	}
	if err := validID(snap); err != nil {
		return fmt.Errorf("storage: index: %w", err)
	}
	snapPrefix := indexPrefix(repo, snap)
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	// restic lists a folder's children together: hash each folder once.
	var lastDir string
	var dirPrefix []byte
	for i, n := range nodes {
		dir := path.Dir(n.Path)
		if i == 0 || dir != lastDir {
			lastDir, dirPrefix = dir, indexDirPrefix(snapPrefix, dir)
		}
		key := make([]byte, 0, len(dirPrefix)+len(n.Name))
		key = append(append(key, dirPrefix...), n.Name...)
		if err := wb.Set(key, encodeIndexValue(make([]byte, 0, 24+len(n.Type)), n)); err != nil {
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

// PutIndexMeta records the state of a snapshot's index (in this format).
// A complete index replaces one of the first format: its entries go.
func (s *Store) PutIndexMeta(m IndexMeta) error {
	m.Format = indexFormat
	key := indexMetaKey(m.RepoID, m.SnapshotID)
	if err := s.update(func(txn *badger.Txn) error { return setJSON(txn, key, m) }); err != nil {
		return err
	}
	if m.Complete && validID(m.RepoID) == nil && validID(m.SnapshotID) == nil {
		if err := s.dropRange(indexFormat1Prefix(m.RepoID, m.SnapshotID)); err != nil {
			return fmt.Errorf("storage: index meta: dropping the first format's entries: %w", err)
		}
	}
	return nil
}

// GetIndexMeta returns the state of a snapshot's index, or ErrNotFound. An
// index of an older format is not complete.
func (s *Store) GetIndexMeta(repo, snap string) (IndexMeta, error) {
	var m IndexMeta
	if err := s.get(indexMetaKey(repo, snap), &m); err != nil {
		return m, fmt.Errorf("storage: index meta: %w", err)
	}
	if m.Format != indexFormat {
		m.Complete = false
	}
	return m, nil
}

// ListIndexDir returns the children of dir, by name, after the cursor.
func (s *Store) ListIndexDir(repo, snap, dir string, cursor string, limit int) ([]IndexNode, string, error) {
	if limit <= 0 || limit > 10000 {
		limit = 1000
	}
	dir = path.Clean("/" + dir)
	prefix := indexDirPrefix(indexPrefix(repo, snap), dir)
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
			name := string(it.Item().Key()[len(prefix):])
			n := IndexNode{Name: name, Path: joinPath(dir, name)}
			if err := it.Item().Value(func(b []byte) error { return decodeIndexValue(b, &n) }); err != nil {
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
	for _, prefix := range [][]byte{indexPrefix(repo, snap), indexFormat1Prefix(repo, snap)} {
		if err := s.dropRange(prefix); err != nil {
			return fmt.Errorf("storage: drop index: %w", err)
		}
	}
	return nil
}

// dropRange deletes every key below prefix, dropBatch at a time.
func (s *Store) dropRange(prefix []byte) error {
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
		if err != nil || len(keys) == 0 {
			return err
		}
		if err := s.update(func(txn *badger.Txn) error {
			for _, k := range keys {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			return err
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
