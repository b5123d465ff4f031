package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// SecondFactor is a user's TOTP second factor (RFC 6238). The shared
// secret is sealed under the master key (bound to the user's name, so a
// record cannot be moved to another user); recovery codes are kept only as
// SHA-256 hashes (they are random, 80 bits, so a plain hash is enough, as
// for API tokens). One record per user, at totp/{user}.
type SecondFactor struct {
	User string `json:"user"`
	// Sealed is the secret; never in an API answer or a log.
	Sealed []byte `json:"sealed"`
	// Confirmed: a code from the secret was given once; until then the
	// factor is an enrolment in progress and login does not ask for it.
	Confirmed   bool      `json:"confirmed,omitempty"`
	CreatedAt   time.Time `json:"created_at"`
	ConfirmedAt time.Time `json:"confirmed_at,omitzero"`
	// Recovery holds the hashes of the unused recovery codes; a used one
	// is removed.
	Recovery []string `json:"recovery,omitempty"`
	// LastStep is the last time step (Unix time / period) whose code was
	// accepted: a code of that step or an earlier one is a replay.
	LastStep int64 `json:"last_step,omitempty"`
}

const totpPrefix = "totp/"

func totpKey(user string) []byte { return []byte(totpPrefix + user) }

func totpAD(user string) []byte { return []byte("restic-manager totp v1\x00" + user) }

// PutSecondFactor stores a new, unconfirmed second factor for a user with
// the secret sealed, replacing an unconfirmed one; a confirmed one is kept
// (ErrExists): replacing it takes an admin's reset first.
func (s *Store) PutSecondFactor(sf SecondFactor, secret []byte) error {
	if sf.User == "" || len(secret) == 0 {
		return fmt.Errorf("storage: put second factor: empty user or secret: %w", ErrInvalid)
	}
	key := totpKey(sf.User)
	sf.Sealed = s.seal(secret, totpAD(sf.User))
	sf.Confirmed, sf.ConfirmedAt, sf.LastStep = false, time.Time{}, 0
	err := s.modify(key, func(txn *badger.Txn) error {
		var old SecondFactor
		err := getJSON(txn, key, &old)
		switch {
		case err == nil && old.Confirmed:
			return ErrExists
		case err != nil && !errors.Is(err, ErrNotFound):
			return err
		}
		return setJSON(txn, key, sf)
	})
	if err != nil {
		return fmt.Errorf("storage: put second factor of %s: %w", sf.User, err)
	}
	return nil
}

// GetSecondFactor returns a user's second factor without its secret, or
// ErrNotFound.
func (s *Store) GetSecondFactor(user string) (SecondFactor, error) {
	var sf SecondFactor
	if err := s.get(totpKey(user), &sf); err != nil {
		return SecondFactor{}, fmt.Errorf("storage: get second factor of %s: %w", user, err)
	}
	sf.Sealed = nil
	return sf, nil
}

// SecondFactorSecret opens a user's TOTP secret.
func (s *Store) SecondFactorSecret(user string) ([]byte, error) {
	var sf SecondFactor
	if err := s.get(totpKey(user), &sf); err != nil {
		return nil, fmt.Errorf("storage: second factor of %s: %w", user, err)
	}
	secret, err := s.open(sf.Sealed, totpAD(user))
	if err != nil {
		return nil, fmt.Errorf("storage: second factor of %s: cannot decrypt: %w", user, err)
	}
	return secret, nil
}

// UpdateSecondFactor is a read-modify-write of a user's second factor with
// its secret opened: fn checks a code and records what it used (the step,
// a recovery code) in one step, so two logins racing with the same code
// cannot both pass. fn's error is returned as is (wrapped) and nothing is
// written. ErrNotFound if the user has none.
func (s *Store) UpdateSecondFactor(user string, fn func(sf *SecondFactor, secret []byte) error) (SecondFactor, error) {
	key := totpKey(user)
	var out SecondFactor
	err := s.modify(key, func(txn *badger.Txn) error {
		var sf SecondFactor
		raw, err := getJSONRaw(txn, key, &sf)
		if err != nil {
			return err
		}
		secret, err := s.open(sf.Sealed, totpAD(user))
		if err != nil {
			return fmt.Errorf("cannot decrypt: %w", err)
		}
		sealed := sf.Sealed
		if err := fn(&sf, secret); err != nil {
			return err
		}
		sf.User, sf.Sealed = user, sealed
		out = sf
		return setChanged(txn, key, raw, sf)
	})
	if err != nil {
		return SecondFactor{}, fmt.Errorf("storage: update second factor of %s: %w", user, err)
	}
	out.Sealed = nil
	return out, nil
}

// DeleteSecondFactor removes a user's second factor; ErrNotFound if there
// is none.
func (s *Store) DeleteSecondFactor(user string) error {
	key := totpKey(user)
	err := s.modify(key, func(txn *badger.Txn) error {
		if err := present(txn, key); err != nil {
			return err
		}
		return txn.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("storage: delete second factor of %s: %w", user, err)
	}
	return nil
}
