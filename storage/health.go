package storage

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// ErrClosed is Check's error once the store has been closed.
var ErrClosed = errors.New("storage: the store is closed")

// Check reports whether the store can still serve: not closed, no failed
// sync (after one, nothing written can be called durable; see groupSync),
// and a known key readable. It reads one small key, so a health probe may
// call it every few seconds.
func (s *Store) Check() error {
	select {
	case <-s.done:
		return ErrClosed
	default:
	}
	if s.db.IsClosed() {
		return ErrClosed
	}
	if err := s.durable.failed(); err != nil {
		return fmt.Errorf("storage: writes are no longer durable: %w", err)
	}
	err := s.db.View(func(txn *badger.Txn) error {
		_, err := getRaw(txn, []byte(metaSchemaKey))
		return err
	})
	if err != nil {
		return fmt.Errorf("storage: cannot read the store: %w", err)
	}
	return nil
}

// failed is the sticky error of a failed sync round, if there was one.
func (g *groupSync) failed() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.err
}
