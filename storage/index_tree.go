package storage

import (
	"encoding/json"
	"errors"
	"fmt"
	"path"

	"github.com/dgraph-io/badger/v4"
)

// GetIndexNode returns the node at p in a snapshot's index, or ErrNotFound.
// The snapshot's root ("/") has no node of its own: it is a directory.
func (s *Store) GetIndexNode(repo, snap, p string) (IndexNode, error) {
	p = path.Clean("/" + p)
	if p == "/" {
		return IndexNode{Name: "/", Type: "dir", Path: "/"}, nil
	}
	var n IndexNode
	key := append(indexDirPrefix(repo, snap, path.Dir(p)), path.Base(p)...)
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		// Index nodes are plain JSON (PutIndexNodes), not versioned records.
		return it.Value(func(b []byte) error { return json.Unmarshal(b, &n) })
	})
	if err != nil {
		return n, fmt.Errorf("storage: index node %s: %w", p, err)
	}
	return n, nil
}

// IndexTreeSize counts the files below dir in a snapshot's index and sums
// their sizes: what a download of the folder holds before compression.
// Below dir means two key ranges: dir's direct children (dir\x00…) and
// every deeper folder (dir/…); the root's is the whole snapshot. It reads
// every entry below dir: 0.7 s for a snapshot of 200,000 files on this
// project's 2-core machine (BenchmarkIndexTreeSize), asked for once before
// a download and once when it starts.
func (s *Store) IndexTreeSize(repo, snap, dir string) (files int, bytes uint64, err error) {
	dir = path.Clean("/" + dir)
	prefixes := [][]byte{indexPrefix(repo, snap)}
	if dir != "/" {
		prefixes = [][]byte{indexDirPrefix(repo, snap, dir), append(indexPrefix(repo, snap), dir+"/"...)}
	}
	err = s.db.View(func(txn *badger.Txn) error {
		for _, prefix := range prefixes {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			for it.Rewind(); it.Valid(); it.Next() {
				var n struct {
					Type string `json:"type"`
					Size uint64 `json:"size"`
				}
				if err := it.Item().Value(func(b []byte) error { return json.Unmarshal(b, &n) }); err != nil {
					it.Close()
					return err
				}
				if n.Type == "file" {
					files++
					bytes += n.Size
				}
			}
			it.Close()
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("storage: index size of %s: %w", dir, err)
	}
	return files, bytes, nil
}
