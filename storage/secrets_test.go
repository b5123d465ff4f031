package storage

import (
	"bytes"
	"crypto/rand"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

func TestSecretsNotOnDisk(t *testing.T) {
	s, dir := openTest(t)
	const (
		password = "Zebra-Quasar-8f41c2-Plaintext-Password"
		envVal   = "Secret-Env-Value-91d7e0"
		name     = "Distinctive-Repo-Name-5b2a"
	)
	_, err := s.CreateRepo(Repo{ID: "r1", Name: name}, RepoSecrets{
		URL: "s3:https://s3.example/bucket", Password: password, Env: map[string]string{"AWS_SECRET_ACCESS_KEY": envVal},
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}

	foundName := false
	err = filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		for _, secret := range []string{password, envVal} {
			if bytes.Contains(data, []byte(secret)) {
				t.Errorf("%s contains secret %q in plaintext", path, secret)
			}
		}
		foundName = foundName || bytes.Contains(data, []byte(name))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// Guard against a vacuous pass: the non-secret name must be findable.
	if !foundName {
		t.Fatal("repo name not found in any file; the scan proves nothing")
	}
}

func TestMasterKeyFile(t *testing.T) {
	_, dir := openTest(t)
	info, err := os.Stat(filepath.Join(dir, masterKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if runtime.GOOS != "windows" {
		if perm := info.Mode().Perm(); perm != 0o600 {
			t.Errorf("master.key mode %04o, want 0600", perm)
		}
		dbInfo, err := os.Stat(filepath.Join(dir, "db"))
		if err != nil {
			t.Fatal(err)
		}
		if perm := dbInfo.Mode().Perm(); perm != 0o700 {
			t.Errorf("db dir mode %04o, want 0700", perm)
		}
	}
	if info.Size() != masterKeySize {
		t.Errorf("master.key is %d bytes", info.Size())
	}
}

func TestMasterKeyRejected(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tamper func(t *testing.T, path string)
	}{
		{"replaced", func(t *testing.T, path string) {
			if err := os.WriteFile(path, randomKey(), 0o600); err != nil {
				t.Fatal(err)
			}
		}},
		{"truncated", func(t *testing.T, path string) {
			if err := os.Truncate(path, 16); err != nil {
				t.Fatal(err)
			}
		}},
		{"group readable", func(t *testing.T, path string) {
			if runtime.GOOS == "windows" {
				t.Skip("no Unix permissions")
			}
			if err := os.Chmod(path, 0o640); err != nil {
				t.Fatal(err)
			}
		}},
		{"missing", func(t *testing.T, path string) {
			if err := os.Remove(path); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			s, dir := openTest(t)
			if _, err := s.CreateRepo(Repo{ID: "r1"}, RepoSecrets{Password: "pw"}); err != nil {
				t.Fatal(err)
			}
			s.Close()
			tc.tamper(t, filepath.Join(dir, masterKeyFile))
			s2, err := Open(dir)
			if err == nil {
				s2.Close()
				t.Fatal("Open accepted a bad master key")
			}
			t.Logf("Open: %v", err)
		})
	}
}

func randomKey() []byte {
	k := make([]byte, masterKeySize)
	rand.Read(k)
	return k
}

// rawRepo reads a repo record including Sealed.
func rawRepo(t *testing.T, s *Store, id string) Repo {
	t.Helper()
	var r Repo
	if err := s.get(repoKey(id), &r); err != nil {
		t.Fatal(err)
	}
	return r
}

func putRawRepo(t *testing.T, s *Store, r Repo) {
	t.Helper()
	if err := s.db.Update(func(txn *badger.Txn) error { return setJSON(txn, repoKey(r.ID), r) }); err != nil {
		t.Fatal(err)
	}
}

func TestSealedSecretsBound(t *testing.T) {
	s, _ := openTest(t)
	for _, id := range []string{"a", "b"} {
		if _, err := s.CreateRepo(Repo{ID: id}, RepoSecrets{Password: "pw-" + id}); err != nil {
			t.Fatal(err)
		}
	}
	a, b := rawRepo(t, s, "a"), rawRepo(t, s, "b")
	if bytes.Equal(a.Sealed, b.Sealed) {
		t.Fatal("two repos sealed to identical ciphertext")
	}

	// Moving a's ciphertext into b must not open as b's secrets.
	moved := b
	moved.Sealed = a.Sealed
	putRawRepo(t, s, moved)
	if _, err := s.RepoSecrets("b"); err == nil {
		t.Fatal("ciphertext moved between repos still opened")
	}

	// A flipped bit is detected.
	a.Sealed[len(a.Sealed)-1] ^= 1
	putRawRepo(t, s, a)
	if _, err := s.RepoSecrets("a"); err == nil {
		t.Fatal("tampered ciphertext opened")
	}

	// A store with a different master key cannot open the secrets either.
	other := &Store{}
	var err error
	if other.aead, err = newAEAD(randomKey()); err != nil {
		t.Fatal(err)
	}
	if _, err := other.open(b.Sealed, repoSecretsAD("b")); err == nil {
		t.Fatal("secrets opened under a different master key")
	}
}
