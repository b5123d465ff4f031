package storage

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// loadFixture fills a store with one record of each kind that matters for
// a restore and returns its backup.
func loadFixture(t *testing.T, s *Store) []byte {
	t.Helper()
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	if err := s.CreateHost(Host{ID: "h1", Name: "web-1", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRepo(Repo{ID: "r1", Name: "main", CreatedAt: now}, RepoSecrets{URL: "rest:http://x/", Password: "s3cret"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(Job{ID: "j1", HostID: "h1", RepoID: "r1", Kind: "backup", Status: JobQueued, CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(User{Name: "admin", PasswordHash: "x", Role: "admin", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	// A deleted record must stay deleted after the restore.
	if err := s.CreateHost(Host{ID: "gone", Name: "gone", CreatedAt: now}); err != nil {
		t.Fatal(err)
	}
	if err := s.deleteKey(hostKey("gone")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// freshWithKey opens a store in a new directory holding a copy of the
// master key at keyFrom.
func freshWithKey(t *testing.T, keyFrom string) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	if keyFrom != "" {
		key, err := os.ReadFile(keyFrom)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, masterKeyFile), key, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func checkRestored(t *testing.T, s *Store) {
	t.Helper()
	if h, err := s.GetHost("h1"); err != nil || h.Name != "web-1" {
		t.Errorf("host: %+v, %v", h, err)
	}
	if _, err := s.GetHost("gone"); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleted host came back: %v", err)
	}
	if sec, err := s.RepoSecrets("r1"); err != nil || sec.Password != "s3cret" {
		t.Errorf("repo secrets: %+v, %v", sec, err)
	}
	if jobs, _, err := s.ListJobs(JobQuery{HostID: "h1"}); err != nil || len(jobs) != 1 || jobs[0].ID != "j1" {
		t.Errorf("jobs by host (index): %+v, %v", jobs, err)
	}
	if u, err := s.GetUser("admin"); err != nil || u.Role != "admin" {
		t.Errorf("user: %+v, %v", u, err)
	}
}

func TestLoadRestoresABackup(t *testing.T) {
	src, srcDir := freshWithKey(t, "")
	backup := loadFixture(t, src)

	dst, dstDir := freshWithKey(t, filepath.Join(srcDir, masterKeyFile))
	if err := dst.Load(bytes.NewReader(backup)); err != nil {
		t.Fatal(err)
	}
	checkRestored(t, dst)
	// Writes after the restore get versions above the restored ones.
	if err := dst.CreateHost(Host{ID: "h2", Name: "web-2"}); err != nil {
		t.Fatal(err)
	}
	if _, err := dst.UpdateHost("h1", func(h *Host) error { h.Name = "web-1b"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	// Reopening verifies the restored key check against the key file.
	again, err := Open(dstDir)
	if err != nil {
		t.Fatal(err)
	}
	defer again.Close()
	if h, err := again.GetHost("h1"); err != nil || h.Name != "web-1b" {
		t.Errorf("host after reopen: %+v, %v", h, err)
	}
	if _, err := again.GetHost("h2"); err != nil {
		t.Errorf("host written after the restore: %v", err)
	}
	if sec, err := again.RepoSecrets("r1"); err != nil || sec.Password != "s3cret" {
		t.Errorf("repo secrets after reopen: %+v, %v", sec, err)
	}
}

func TestLoadRefusesAnotherMasterKey(t *testing.T) {
	src, _ := freshWithKey(t, "")
	backup := loadFixture(t, src)
	dst, _ := freshWithKey(t, "") // a key of its own
	err := dst.Load(bytes.NewReader(backup))
	if !errors.Is(err, errMasterKeyMismatch) {
		t.Fatalf("Load with another master key: %v", err)
	}
}

func TestLoadRefusesAStoreInUse(t *testing.T) {
	src, srcDir := freshWithKey(t, "")
	backup := loadFixture(t, src)
	dst, _ := freshWithKey(t, filepath.Join(srcDir, masterKeyFile))
	if err := dst.CreateHost(Host{ID: "local", Name: "local"}); err != nil {
		t.Fatal(err)
	}
	if err := dst.Load(bytes.NewReader(backup)); !errors.Is(err, errNotFresh) {
		t.Fatalf("Load over existing records: %v", err)
	}
}

func TestLoadRefusesATruncatedBackup(t *testing.T) {
	src, srcDir := freshWithKey(t, "")
	backup := loadFixture(t, src)
	dst, _ := freshWithKey(t, filepath.Join(srcDir, masterKeyFile))
	if err := dst.Load(bytes.NewReader(backup[:len(backup)-3])); err == nil {
		t.Fatal("a truncated backup loaded")
	}
	empty, _ := freshWithKey(t, filepath.Join(srcDir, masterKeyFile))
	if err := empty.Load(bytes.NewReader(nil)); err == nil {
		t.Fatal("an empty backup loaded")
	}
}

func TestCheckBackup(t *testing.T) {
	src, _ := freshWithKey(t, "")
	backup := loadFixture(t, src)
	n, err := CheckBackup(bytes.NewReader(backup))
	// schema, key check, host, repo, job with its two index keys, user, and
	// the deleted host's tombstone: at least 8 records.
	if err != nil || n < 8 {
		t.Fatalf("CheckBackup = %d, %v", n, err)
	}
	for name, b := range map[string][]byte{
		"truncated": backup[:len(backup)-1],
		"empty":     nil,
		"junk":      []byte("<html>404 not found</html>"),
	} {
		if _, err := CheckBackup(bytes.NewReader(b)); err == nil {
			t.Errorf("%s backup passed", name)
		}
	}
}

func TestIsLocked(t *testing.T) {
	s, dir := freshWithKey(t, "")
	_, err := Open(dir)
	if !IsLocked(err) {
		t.Fatalf("a second Open of a store in use: %v", err)
	}
	s.Close()
	again, err := Open(dir)
	if IsLocked(err) || err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	again.Close()
}
