package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// CreateUser stores a new user; ErrExists if the name is taken.
func (s *Store) CreateUser(u User) error {
	if u.Name == "" {
		return fmt.Errorf("storage: create user: empty name: %w", ErrInvalid)
	}
	if err := s.insert(userKey(u.Name), u); err != nil {
		return fmt.Errorf("storage: create user %s: %w", u.Name, err)
	}
	return nil
}

// GetUser returns the user or ErrNotFound.
func (s *Store) GetUser(name string) (User, error) {
	var u User
	if err := s.get(userKey(name), &u); err != nil {
		return User{}, fmt.Errorf("storage: get user %s: %w", name, err)
	}
	return u, nil
}

// CountUsers returns the number of users (zero means the console still
// needs its first admin).
func (s *Store) CountUsers() (int, error) {
	n := 0
	prefix := []byte(userPrefix)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.IteratorOptions{Prefix: prefix} // keys only
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			n++
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("storage: count users: %w", err)
	}
	return n, nil
}

// PutSession stores (or replaces) a session under the SHA-256 of its token.
func (s *Store) PutSession(tokenHash []byte, sess Session) error {
	key, err := hashKey(sessPrefix, tokenHash)
	if err == nil {
		err = s.update(func(txn *badger.Txn) error { return setJSON(txn, key, sess) })
	}
	if err != nil {
		return fmt.Errorf("storage: put session: %w", err)
	}
	return nil
}

// GetSession returns the session, or ErrNotFound if it does not exist or
// has expired at now (an expired session is deleted). A zero ExpiresAt
// counts as expired.
func (s *Store) GetSession(tokenHash []byte, now time.Time) (Session, error) {
	key, err := hashKey(sessPrefix, tokenHash)
	if err != nil {
		return Session{}, fmt.Errorf("storage: get session: %w", err)
	}
	// Checked on every request: read-only first, write only to clean up.
	var sess Session
	if err := s.get(key, &sess); err != nil {
		return Session{}, fmt.Errorf("storage: get session: %w", err)
	}
	if expired(sess.ExpiresAt, now) {
		if err := s.deleteKey(key); err != nil {
			// The session is refused either way; the record goes next time.
			s.log.Warn("deleting expired session", "err", err)
		}
		return Session{}, fmt.Errorf("storage: get session: expired: %w", ErrNotFound)
	}
	return sess, nil
}

// DeleteSession removes a session. Deleting a missing session is not an
// error, so logging out twice is harmless.
func (s *Store) DeleteSession(tokenHash []byte) error {
	key, err := hashKey(sessPrefix, tokenHash)
	if err == nil {
		err = s.deleteKey(key)
	}
	if err != nil {
		return fmt.Errorf("storage: delete session: %w", err)
	}
	return nil
}

// PutAPIToken stores (or replaces) an API token under the SHA-256 of the token.
func (s *Store) PutAPIToken(tokenHash []byte, t APIToken) error {
	key, err := hashKey(tokPrefix, tokenHash)
	if err == nil {
		err = s.update(func(txn *badger.Txn) error { return setJSON(txn, key, t) })
	}
	if err != nil {
		return fmt.Errorf("storage: put API token: %w", err)
	}
	return nil
}

// GetAPIToken returns the token record or ErrNotFound.
func (s *Store) GetAPIToken(tokenHash []byte) (APIToken, error) {
	key, err := hashKey(tokPrefix, tokenHash)
	if err != nil {
		return APIToken{}, fmt.Errorf("storage: get API token: %w", err)
	}
	var t APIToken
	if err := s.get(key, &t); err != nil {
		return APIToken{}, fmt.Errorf("storage: get API token: %w", err)
	}
	return t, nil
}

// ListAPITokens returns every API token record (there are few).
func (s *Store) ListAPITokens() ([]APIToken, error) {
	out := []APIToken{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(tokPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var t APIToken
			if err := it.Item().Value(func(b []byte) error { return decode(b, &t) }); err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list API tokens: %w", err)
	}
	return out, nil
}

// DeleteAPIToken revokes the token with this ID; ErrNotFound if none.
func (s *Store) DeleteAPIToken(id string) error {
	if id == "" {
		return fmt.Errorf("storage: delete API token: empty id: %w", ErrInvalid)
	}
	err := s.update(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(tokPrefix)
		it := txn.NewIterator(opts)
		var key []byte
		for it.Rewind(); it.Valid() && key == nil; it.Next() {
			var t APIToken
			if err := it.Item().Value(func(b []byte) error { return decode(b, &t) }); err != nil {
				it.Close()
				return err
			}
			if t.ID == id {
				key = it.Item().KeyCopy(nil)
			}
		}
		it.Close()
		if key == nil {
			return ErrNotFound
		}
		return txn.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("storage: delete API token %s: %w", id, err)
	}
	return nil
}

// ListUsers returns every user.
func (s *Store) ListUsers() ([]User, error) {
	out := []User{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(userPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var u User
			if err := it.Item().Value(func(b []byte) error { return decode(b, &u) }); err != nil {
				return err
			}
			out = append(out, u)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list users: %w", err)
	}
	return out, nil
}

func (s *Store) deleteKey(key []byte) error {
	err := s.update(func(txn *badger.Txn) error { return txn.Delete(key) })
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil
	}
	return err
}
