package storage

import (
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// maxHostPage caps one ListHosts page.
const maxHostPage = 1000

// CreateHost stores a new host; ErrExists if the ID is taken.
func (s *Store) CreateHost(h Host) error {
	if err := validID(h.ID); err != nil {
		return fmt.Errorf("storage: create host: %w", err)
	}
	if err := s.insert(hostKey(h.ID), h); err != nil {
		return fmt.Errorf("storage: create host %s: %w", h.ID, err)
	}
	return nil
}

// GetHost returns the host or ErrNotFound.
func (s *Store) GetHost(id string) (Host, error) {
	var h Host
	if err := s.get(hostKey(id), &h); err != nil {
		return Host{}, fmt.Errorf("storage: get host %s: %w", id, err)
	}
	return h, nil
}

// ListHosts returns up to limit hosts with ID > after, ordered by ID. A limit
// of zero or less, or above 1000, means 1000. Pass the last ID of a page as
// after to get the next one.
func (s *Store) ListHosts(after string, limit int) ([]Host, error) {
	if limit <= 0 || limit > maxHostPage {
		limit = maxHostPage
	}
	prefix := []byte(hostPrefix)
	start := prefix
	if after != "" {
		// The smallest key strictly greater than host/{after}.
		start = []byte(hostPrefix + after + "\x00")
	}
	hosts := make([]Host, 0, min(limit, 64))
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		opts.PrefetchSize = min(limit, opts.PrefetchSize)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(start); it.ValidForPrefix(prefix) && len(hosts) < limit; it.Next() {
			var h Host
			if err := it.Item().Value(func(b []byte) error { return decode(b, &h) }); err != nil {
				return fmt.Errorf("%s: %w", it.Item().Key(), err)
			}
			hosts = append(hosts, h)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list hosts: %w", err)
	}
	return hosts, nil
}

// UpdateHost reads the host, calls fn on it inside one transaction and writes
// it back; fn returning an error aborts without writing (the error is
// returned wrapped). ErrNotFound for an unknown id. fn must not change the
// ID, and may run more than once if the transaction has to be retried, so
// it should only modify the host it is given. fn must not call UpdateHost
// for the same id (that would deadlock).
func (s *Store) UpdateHost(id string, fn func(*Host) error) (Host, error) {
	key := hostKey(id)
	var out Host
	err := s.modify(key, func(txn *badger.Txn) error {
		var h Host
		raw, err := getJSONRaw(txn, key, &h)
		if err != nil {
			return err
		}
		if err := fn(&h); err != nil {
			return err
		}
		if h.ID != id {
			return fmt.Errorf("host ID is immutable (changed to %q): %w", h.ID, ErrInvalid)
		}
		out = h
		return setChanged(txn, key, raw, h)
	})
	if err != nil {
		return Host{}, fmt.Errorf("storage: update host %s: %w", id, err)
	}
	return out, nil
}

// ---- enrolment tokens (stored by SHA-256 of the token)

// PutEnrollToken stores (or replaces) an enrolment token.
func (s *Store) PutEnrollToken(tokenHash []byte, t EnrollToken) error {
	key, err := hashKey(enrollPrefix, tokenHash)
	if err == nil {
		err = s.update(func(txn *badger.Txn) error { return setJSON(txn, key, t) })
	}
	if err != nil {
		return fmt.Errorf("storage: put enrolment token: %w", err)
	}
	return nil
}

// ConsumeEnrollToken deletes and returns the token in one transaction, so a
// token works once. Expired tokens give ErrNotFound (and are deleted). A
// token expires at ExpiresAt; a zero ExpiresAt counts as expired.
func (s *Store) ConsumeEnrollToken(tokenHash []byte, now time.Time) (EnrollToken, error) {
	key, err := hashKey(enrollPrefix, tokenHash)
	if err != nil {
		return EnrollToken{}, fmt.Errorf("storage: consume enrolment token: %w", err)
	}
	var t EnrollToken
	err = s.update(func(txn *badger.Txn) error {
		t = EnrollToken{}
		if err := getJSON(txn, key, &t); err != nil {
			return err
		}
		// Two concurrent consumers both read the token, but only one
		// commit succeeds: the other conflicts, reruns and finds nothing.
		return txn.Delete(key)
	})
	if err != nil {
		return EnrollToken{}, fmt.Errorf("storage: consume enrolment token: %w", err)
	}
	if expired(t.ExpiresAt, now) {
		return EnrollToken{}, fmt.Errorf("storage: consume enrolment token: expired at %s: %w",
			t.ExpiresAt.Format(time.RFC3339), ErrNotFound)
	}
	return t, nil
}

// expired fails closed: a record without an expiry time is expired.
func expired(expiresAt, now time.Time) bool {
	return !now.Before(expiresAt)
}

// DeleteHost removes a host's record, its schedules and its drill history. Its jobs stay in
// the history (they name the host's ID).
func (s *Store) DeleteHost(id string) error {
	if err := validID(id); err != nil {
		return fmt.Errorf("storage: delete host: %w", err)
	}
	err := s.update(func(txn *badger.Txn) error {
		if _, err := getRaw(txn, hostKey(id)); err != nil {
			return err
		}
		if err := txn.Delete(hostKey(id)); err != nil {
			return err
		}
		if err := txn.Delete(drillsKey(id)); err != nil {
			return err
		}
		if err := txn.Delete(appliedKey(id)); err != nil {
			return err
		}
		return txn.Delete(schedKey(id))
	})
	if err != nil {
		return fmt.Errorf("storage: delete host %s: %w", id, err)
	}
	return nil
}
