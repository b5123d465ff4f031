package storage

import (
	"bytes"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"

	"github.com/dgraph-io/badger/v4"
)

const (
	masterKeyFile = "master.key"
	masterKeySize = 32 // AES-256
)

var errMasterKeyMismatch = errors.New("master key does not match store")

// Additional data binds each ciphertext to its purpose: a repo's sealed
// secrets open only under that repo's ID, so a record cannot be moved or
// swapped between repositories.
const (
	keyCheckAD       = "restic-manager storage keycheck v1"
	keyCheckPlain    = "restic-manager master key check"
	repoSecretsADTag = "restic-manager repo secrets v1\x00"
)

func repoSecretsAD(id string) []byte { return []byte(repoSecretsADTag + id) }

// readMasterKey returns the key at path, nil if the file does not exist, or
// an error if it is unsafe (readable by group/other) or malformed.
func readMasterKey(path string) ([]byte, error) {
	info, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("storage: master key: %w", err)
	}
	if !info.Mode().IsRegular() {
		return nil, fmt.Errorf("storage: master key %s is not a regular file", path)
	}
	// Unix permission bits mean nothing on Windows; there the data directory's
	// ACL protects the key.
	if runtime.GOOS != "windows" && info.Mode().Perm()&0o077 != 0 {
		return nil, fmt.Errorf("storage: master key %s has mode %04o; it must not be accessible by group or others (chmod 600 %s)",
			path, info.Mode().Perm(), path)
	}
	key, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("storage: master key: %w", err)
	}
	if len(key) != masterKeySize {
		return nil, fmt.Errorf("storage: master key %s is %d bytes, want %d", path, len(key), masterKeySize)
	}
	return key, nil
}

// createMasterKey writes a fresh random key to path. O_EXCL makes sure an
// existing key is never overwritten.
func createMasterKey(path string) ([]byte, error) {
	key := make([]byte, masterKeySize)
	rand.Read(key) // never returns an error; crashes the program instead
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return nil, fmt.Errorf("storage: create master key: %w", err)
	}
	_, err = f.Write(key)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(path)
		return nil, fmt.Errorf("storage: create master key: %w", err)
	}
	// Make the new directory entry durable too; losing the key after the
	// first secret was sealed would lose that secret.
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // best effort: not supported on every platform
		d.Close()
	}
	return key, nil
}

func deriveKey(master []byte) []byte {
	m := hmac.New(sha256.New, master)
	m.Write([]byte("restic-manager derived secrets v1"))
	return m.Sum(nil)
}

// DeriveSecret returns a stable secret for label, derived from the master
// key: the same data directory always gives the same value, and nothing is
// stored in plaintext. The console's own login on an external broker is
// one.
func (s *Store) DeriveSecret(label string) string {
	m := hmac.New(sha256.New, s.deriveKey)
	m.Write([]byte(label))
	return base64.RawURLEncoding.EncodeToString(m.Sum(nil))
}

// newAEAD returns AES-256-GCM that generates a random nonce per Seal and
// prefixes it to the ciphertext.
func newAEAD(key []byte) (cipher.AEAD, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCMWithRandomNonce(block)
}

func (s *Store) seal(plain, ad []byte) []byte {
	return s.aead.Seal(nil, nil, plain, ad)
}

func (s *Store) open(sealed, ad []byte) ([]byte, error) {
	return s.aead.Open(nil, nil, sealed, ad)
}

func (s *Store) newKeyCheck() []byte {
	return s.seal([]byte(keyCheckPlain), []byte(keyCheckAD))
}

func (s *Store) verifyKeyCheck(check []byte) error {
	plain, err := s.open(check, []byte(keyCheckAD))
	if err != nil || !bytes.Equal(plain, []byte(keyCheckPlain)) {
		return errMasterKeyMismatch
	}
	return nil
}

// ---- repositories

// CreateRepo seals secrets under the master key into r.Sealed and stores r.
// The returned Repo has Sealed cleared, like GetRepo's.
func (s *Store) CreateRepo(r Repo, secrets RepoSecrets) (Repo, error) {
	if err := validID(r.ID); err != nil {
		return Repo{}, fmt.Errorf("storage: create repo: %w", err)
	}
	plain, err := encode(secrets)
	if err != nil {
		return Repo{}, fmt.Errorf("storage: create repo %s: %w", r.ID, err)
	}
	r.Sealed = s.seal(plain, repoSecretsAD(r.ID))
	clear(plain) // best effort; the caller's strings are beyond reach
	if err := s.insert(repoKey(r.ID), r); err != nil {
		return Repo{}, fmt.Errorf("storage: create repo %s: %w", r.ID, err)
	}
	r.Sealed = nil
	return r, nil
}

// GetRepo returns the repository with Sealed cleared, so the ciphertext is
// never handed out by accident; use RepoSecrets to open it.
func (s *Store) GetRepo(id string) (Repo, error) {
	var r Repo
	if err := s.get(repoKey(id), &r); err != nil {
		return Repo{}, fmt.Errorf("storage: get repo %s: %w", id, err)
	}
	r.Sealed = nil
	return r, nil
}

// ListRepos returns all repositories ordered by ID, with Sealed cleared.
func (s *Store) ListRepos() ([]Repo, error) {
	repos := []Repo{}
	prefix := []byte(repoPrefix)
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = prefix
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			var r Repo
			if err := it.Item().Value(func(b []byte) error { return decode(b, &r) }); err != nil {
				return fmt.Errorf("%s: %w", it.Item().Key(), err)
			}
			r.Sealed = nil
			repos = append(repos, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list repos: %w", err)
	}
	return repos, nil
}

// UpdateRepo is read-modify-write of a repository's public fields; the
// sealed secrets cannot be changed through it.
func (s *Store) UpdateRepo(id string, fn func(*Repo) error) (Repo, error) {
	key := repoKey(id)
	var out Repo
	err := s.modify(key, func(txn *badger.Txn) error {
		var r Repo
		raw, err := getJSONRaw(txn, key, &r)
		if err != nil {
			return err
		}
		sealed := r.Sealed
		if err := fn(&r); err != nil {
			return err
		}
		if r.ID != id {
			return fmt.Errorf("repo ID is immutable: %w", ErrInvalid)
		}
		r.Sealed = sealed
		out = r
		return setChanged(txn, key, raw, r)
	})
	if err != nil {
		return Repo{}, fmt.Errorf("storage: update repo %s: %w", id, err)
	}
	out.Sealed = nil
	return out, nil
}

// PutSnapshotCache stores the latest snapshot list of a repository (raw
// JSON as the agent reported it).
func (s *Store) PutSnapshotCache(repoID string, list []byte) error {
	if err := validID(repoID); err != nil {
		return fmt.Errorf("storage: snapshot cache: %w", err)
	}
	key := []byte("snapcache/" + repoID)
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, key, json.RawMessage(list)) })
}

// SnapshotCache returns the cached list, or ErrNotFound.
func (s *Store) SnapshotCache(repoID string) ([]byte, error) {
	var raw json.RawMessage
	if err := s.get([]byte("snapcache/"+repoID), &raw); err != nil {
		return nil, fmt.Errorf("storage: snapshot cache %s: %w", repoID, err)
	}
	return raw, nil
}

// RepoSecrets opens the sealed secrets of a repository.
func (s *Store) RepoSecrets(id string) (RepoSecrets, error) {
	var r Repo
	if err := s.get(repoKey(id), &r); err != nil {
		return RepoSecrets{}, fmt.Errorf("storage: repo secrets %s: %w", id, err)
	}
	plain, err := s.open(r.Sealed, repoSecretsAD(id))
	if err != nil {
		return RepoSecrets{}, fmt.Errorf("storage: repo secrets %s: cannot decrypt (wrong master key or tampered record): %w", id, err)
	}
	defer clear(plain)
	var sec RepoSecrets
	if err := decode(plain, &sec); err != nil {
		return RepoSecrets{}, fmt.Errorf("storage: repo secrets %s: %w", id, err)
	}
	return sec, nil
}

// UpdateRepoSecrets is read-modify-write of a repository and its secrets
// together: the secrets are opened, changed by fn and sealed again.
func (s *Store) UpdateRepoSecrets(id string, fn func(*Repo, *RepoSecrets) error) (Repo, error) {
	key := repoKey(id)
	var out Repo
	err := s.modify(key, func(txn *badger.Txn) error {
		var r Repo
		raw, err := getJSONRaw(txn, key, &r)
		if err != nil {
			return err
		}
		plain, err := s.open(r.Sealed, repoSecretsAD(id))
		if err != nil {
			return fmt.Errorf("cannot decrypt (wrong master key or tampered record): %w", err)
		}
		var sec RepoSecrets
		err = decode(plain, &sec)
		clear(plain)
		if err != nil {
			return err
		}
		if err := fn(&r, &sec); err != nil {
			return err
		}
		if r.ID != id {
			return fmt.Errorf("repo ID is immutable: %w", ErrInvalid)
		}
		plain, err = encode(sec)
		if err != nil {
			return err
		}
		r.Sealed = s.seal(plain, repoSecretsAD(id))
		clear(plain)
		out = r
		return setChanged(txn, key, raw, r)
	})
	if err != nil {
		return Repo{}, fmt.Errorf("storage: update repo %s: %w", id, err)
	}
	out.Sealed = nil
	return out, nil
}

// DeleteRepo removes a repository, its sealed secrets and its cached
// snapshot list. Its jobs stay in the history.
func (s *Store) DeleteRepo(id string) error {
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get(repoKey(id)); err != nil {
			if errors.Is(err, badger.ErrKeyNotFound) {
				return ErrNotFound
			}
			return err
		}
		if err := txn.Delete(repoKey(id)); err != nil {
			return err
		}
		return txn.Delete([]byte("snapcache/" + id))
	})
	if err != nil {
		return fmt.Errorf("storage: delete repo %s: %w", id, err)
	}
	return nil
}
