package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Enrolment keys live under
//
//	enrollkey/{hex sha256(key)}          EnrollKey
//
// like API tokens: the key itself is shown once, when it is made.
const enrollKeyPrefix = "enrollkey/"

var (
	// ErrEnrollKeyExpired: the enrolment key's time is over.
	ErrEnrollKeyExpired = errors.New("expired")
	// ErrEnrollKeyUsedUp: the enrolment key has made as many hosts as it may.
	ErrEnrollKeyUsedUp = errors.New("used up")
)

// EnrollKey is a reusable enrolment key: each use makes a new host with
// the key's labels, until it expires or has been used MaxUses times.
type EnrollKey struct {
	ID     string            `json:"id"`
	Name   string            `json:"name"`
	Labels map[string]string `json:"labels,omitempty"`
	// AllowAgentLabels lets the enrolling agent add labels of its own
	// (the key's win on a conflict); false gives a host the key's only.
	AllowAgentLabels bool `json:"allow_agent_labels"`
	// MaxUses caps the hosts the key makes; 0 is no cap.
	MaxUses    int       `json:"max_uses"`
	Uses       int       `json:"uses"`
	CreatedBy  string    `json:"created_by"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// usable says why k cannot make a host at now (ErrEnrollKeyExpired,
// ErrEnrollKeyUsedUp), or nil. A zero ExpiresAt counts as expired.
func (k EnrollKey) usable(now time.Time) error {
	if expired(k.ExpiresAt, now) {
		return ErrEnrollKeyExpired
	}
	if k.MaxUses > 0 && k.Uses >= k.MaxUses {
		return ErrEnrollKeyUsedUp
	}
	return nil
}

// CreateEnrollKey stores a new enrolment key under the SHA-256 of the key.
func (s *Store) CreateEnrollKey(keyHash []byte, k EnrollKey) error {
	if err := validID(k.ID); err != nil {
		return fmt.Errorf("storage: create enrolment key: %w", err)
	}
	key, err := hashKey(enrollKeyPrefix, keyHash)
	if err == nil {
		err = s.insert(key, k)
	}
	if err != nil {
		return fmt.Errorf("storage: create enrolment key %s: %w", k.ID, err)
	}
	return nil
}

// GetEnrollKey returns the key record with this hash, or ErrNotFound; with
// ErrEnrollKeyExpired or ErrEnrollKeyUsedUp (and the record) when it can
// make no more hosts. It reads only: UseEnrollKey is the check that counts.
func (s *Store) GetEnrollKey(keyHash []byte, now time.Time) (EnrollKey, error) {
	key, err := hashKey(enrollKeyPrefix, keyHash)
	if err != nil {
		return EnrollKey{}, fmt.Errorf("storage: get enrolment key: %w", err)
	}
	var k EnrollKey
	if err := s.get(key, &k); err != nil {
		return EnrollKey{}, fmt.Errorf("storage: get enrolment key: %w", err)
	}
	if err := k.usable(now); err != nil {
		return k, fmt.Errorf("storage: get enrolment key %s: %w", k.ID, err)
	}
	return k, nil
}

// UseEnrollKey makes a host with the enrolment key whose hash is given: in
// one transaction it checks the key (ErrNotFound, ErrEnrollKeyExpired,
// ErrEnrollKeyUsedUp, each with the record when there is one), counts the
// use and stores the host that mk makes of the key. mk may refuse (its
// error is returned wrapped, and nothing is counted); it may run more than
// once and must only build the host. Uses of one key are serialised, so a
// key with MaxUses n makes n hosts however many agents race for it.
func (s *Store) UseEnrollKey(keyHash []byte, now time.Time, mk func(EnrollKey) (Host, error)) (EnrollKey, Host, error) {
	key, err := hashKey(enrollKeyPrefix, keyHash)
	if err != nil {
		return EnrollKey{}, Host{}, fmt.Errorf("storage: use enrolment key: %w", err)
	}
	var (
		k EnrollKey
		h Host
	)
	err = s.modify(key, func(txn *badger.Txn) error {
		k, h = EnrollKey{}, Host{}
		if err := getJSON(txn, key, &k); err != nil {
			return err
		}
		if err := k.usable(now); err != nil {
			return err
		}
		var err error
		if h, err = mk(k); err != nil {
			return err
		}
		if err := validID(h.ID); err != nil {
			return err
		}
		if err := absent(txn, hostKey(h.ID)); err != nil {
			return err
		}
		k.Uses++
		k.LastUsedAt = now.UTC()
		if err := setJSON(txn, key, k); err != nil {
			return err
		}
		return setJSON(txn, hostKey(h.ID), h)
	})
	if err != nil {
		return k, Host{}, fmt.Errorf("storage: use enrolment key: %w", err)
	}
	return k, h, nil
}

// ListEnrollKeys returns every enrolment key (an admin makes few).
func (s *Store) ListEnrollKeys() ([]EnrollKey, error) {
	out := []EnrollKey{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(enrollKeyPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var k EnrollKey
			if err := it.Item().Value(func(b []byte) error { return decode(b, &k) }); err != nil {
				return fmt.Errorf("%s: %w", it.Item().Key(), err)
			}
			out = append(out, k)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list enrolment keys: %w", err)
	}
	return out, nil
}

// DeleteEnrollKey removes the enrolment key with this ID (ErrNotFound if
// none): it makes no host from then on. The hosts it made stay.
func (s *Store) DeleteEnrollKey(id string) error {
	if id == "" {
		return fmt.Errorf("storage: delete enrolment key: empty id: %w", ErrInvalid)
	}
	var key []byte
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(enrollKeyPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid() && key == nil; it.Next() {
			var k EnrollKey
			if err := it.Item().Value(func(b []byte) error { return decode(b, &k) }); err != nil {
				return err
			}
			if k.ID == id {
				key = it.Item().KeyCopy(nil)
			}
		}
		return nil
	})
	if err == nil && key == nil {
		err = ErrNotFound
	}
	if err == nil {
		// Under the key's lock: a use in progress ends first, the next
		// finds nothing.
		err = s.modify(key, func(txn *badger.Txn) error {
			if err := present(txn, key); err != nil {
				return err
			}
			return txn.Delete(key)
		})
	}
	if err != nil {
		return fmt.Errorf("storage: delete enrolment key %s: %w", id, err)
	}
	return nil
}
