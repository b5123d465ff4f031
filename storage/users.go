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

// TouchAPIToken records that the token authenticated a request at at,
// unless its record already says so to within every: the token is read on
// every request, and one write a minute per token, not one per request,
// is what keeping its last use costs. It reports whether it wrote.
// ErrNotFound if the token is gone (revoked meanwhile).
func (s *Store) TouchAPIToken(tokenHash []byte, at time.Time, every time.Duration) (bool, error) {
	key, err := hashKey(tokPrefix, tokenHash)
	if err != nil {
		return false, fmt.Errorf("storage: touch API token: %w", err)
	}
	wrote := false
	err = s.modify(key, func(txn *badger.Txn) error {
		wrote = false
		var t APIToken
		if err := getJSON(txn, key, &t); err != nil {
			return err
		}
		if !t.LastUsedAt.IsZero() && at.Sub(t.LastUsedAt) < every {
			return errUnchanged
		}
		t.LastUsedAt = at.UTC()
		wrote = true
		return setJSON(txn, key, t)
	})
	if err != nil {
		return false, fmt.Errorf("storage: touch API token: %w", err)
	}
	return wrote, nil
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

// UpdateUser is a read-modify-write of one user; ErrNotFound if there is
// none. fn may refuse the change by returning an error. The name cannot
// change.
func (s *Store) UpdateUser(name string, fn func(u *User) error) (User, error) {
	key := userKey(name)
	var out User
	err := s.modify(key, func(txn *badger.Txn) error {
		var u User
		raw, err := getJSONRaw(txn, key, &u)
		if err != nil {
			return err
		}
		if err := fn(&u); err != nil {
			return err
		}
		u.Name = name
		out = u
		return setChanged(txn, key, raw, u)
	})
	if err != nil {
		return User{}, fmt.Errorf("storage: update user %s: %w", name, err)
	}
	return out, nil
}

// DeleteUser removes a user; ErrNotFound if there is none. Its sessions and
// tokens stop authenticating at once (they name a user that is gone); End
// Sessions and DeleteAPITokensOf remove their records.
func (s *Store) DeleteUser(name string) error {
	key := userKey(name)
	err := s.modify(key, func(txn *badger.Txn) error {
		if err := present(txn, key); err != nil {
			return err
		}
		return txn.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("storage: delete user %s: %w", name, err)
	}
	return nil
}

// EndSessions deletes every session of user, and on the way every session
// that has expired at now (a session nobody presents again is otherwise
// never read, so never cleaned up). It returns how many of user's sessions
// it ended. Sessions are not indexed by user: the scan reads each session
// once, a page of deleteBatch at a time, so memory and transaction size stay
// bounded however many there are.
func (s *Store) EndSessions(user string, now time.Time) (int, error) {
	n, err := s.deleteWhere(sessPrefix, func(raw []byte) (bool, bool, error) {
		var sess Session
		if err := decode(raw, &sess); err != nil {
			return false, false, err
		}
		mine := sess.User == user
		return mine || expired(sess.ExpiresAt, now), mine, nil
	})
	if err != nil {
		return n, fmt.Errorf("storage: end sessions of %s: %w", user, err)
	}
	return n, nil
}

// DeleteAPITokensOf revokes every API token of user and returns how many.
func (s *Store) DeleteAPITokensOf(user string) (int, error) {
	n, err := s.deleteWhere(tokPrefix, func(raw []byte) (bool, bool, error) {
		var t APIToken
		if err := decode(raw, &t); err != nil {
			return false, false, err
		}
		return t.User == user, t.User == user, nil
	})
	if err != nil {
		return n, fmt.Errorf("storage: delete API tokens of %s: %w", user, err)
	}
	return n, nil
}

// deleteBatch bounds one page of deleteWhere: the keys it holds in memory
// and the deletions in one transaction (Badger refuses transactions that
// grow too large).
const deleteBatch = 1000

// deleteWhere deletes the records under prefix that match, a page at a
// time: read a page of matching keys, delete them in one transaction, go
// on after the last key read. match reports whether to delete a record and
// whether to count it.
func (s *Store) deleteWhere(prefix string, match func(raw []byte) (del, count bool, err error)) (int, error) {
	n := 0
	seek := []byte(prefix)
	for {
		var keys [][]byte
		var last []byte
		counted, read := 0, 0
		err := s.db.View(func(txn *badger.Txn) error {
			opts := badger.DefaultIteratorOptions
			opts.Prefix = []byte(prefix)
			it := txn.NewIterator(opts)
			defer it.Close()
			for it.Seek(seek); it.Valid() && read < deleteBatch; it.Next() {
				item := it.Item()
				last = item.KeyCopy(last[:0])
				read++
				var del, count bool
				if err := item.Value(func(b []byte) error {
					var err error
					del, count, err = match(b)
					return err
				}); err != nil {
					return fmt.Errorf("%s: %w", item.Key(), err)
				}
				if del {
					keys = append(keys, item.KeyCopy(nil))
					if count {
						counted++
					}
				}
			}
			return nil
		})
		if err != nil {
			return n, err
		}
		if len(keys) > 0 {
			if err := s.update(func(txn *badger.Txn) error {
				for _, k := range keys {
					if err := txn.Delete(k); err != nil {
						return err
					}
				}
				return nil
			}); err != nil {
				return n, err
			}
			n += counted
		}
		if read < deleteBatch {
			return n, nil
		}
		// The next page starts right after the last key read.
		seek = append(last, 0)
	}
}
