package storage

import (
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
	n := IndexNode{Name: path.Base(p), Path: p}
	key := append(indexDirPrefix(indexPrefix(repo, snap), path.Dir(p)), n.Name...)
	err := s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return it.Value(func(b []byte) error { return decodeIndexValue(b, &n) })
	})
	if err != nil {
		return n, fmt.Errorf("storage: index node %s: %w", p, err)
	}
	return n, nil
}

// IndexTreeSize counts the files below dir in a snapshot's index and sums
// their sizes: what a download of the folder holds before compression.
// The root's is every entry of the snapshot, read in one pass; below a
// folder, its subfolders are walked one key range each. It reads every
// entry below dir: asked for once before a download and once when it
// starts.
func (s *Store) IndexTreeSize(repo, snap, dir string) (files int, bytes uint64, err error) {
	dir = path.Clean("/" + dir)
	snapPrefix := indexPrefix(repo, snap)
	err = s.db.View(func(txn *badger.Txn) error {
		count := func(prefix []byte, onDir func(name string)) error {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = prefix
			it := txn.NewIterator(opts)
			defer it.Close()
			var n IndexNode
			for it.Rewind(); it.Valid(); it.Next() {
				if err := it.Item().Value(func(b []byte) error { return decodeIndexValue(b, &n) }); err != nil {
					return err
				}
				switch {
				case n.Type == "file":
					files++
					bytes += n.Size
				case n.Type == "dir" && onDir != nil:
					onDir(string(it.Item().Key()[len(prefix):]))
				}
			}
			return nil
		}
		if dir == "/" {
			return count(snapPrefix, nil)
		}
		todo := []string{dir}
		for len(todo) > 0 {
			d := todo[len(todo)-1]
			todo = todo[:len(todo)-1]
			if err := count(indexDirPrefix(snapPrefix, d), func(name string) { todo = append(todo, joinPath(d, name)) }); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, 0, fmt.Errorf("storage: index size of %s: %w", dir, err)
	}
	return files, bytes, nil
}
