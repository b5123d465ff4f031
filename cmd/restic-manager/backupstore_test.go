package main

import (
	"flag"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

func TestParseWithFile(t *testing.T) {
	for _, args := range [][]string{
		{"out.bak", "--data", "/d", "--force"},
		{"--data", "/d", "out.bak", "--force"},
		{"--data=/d", "--force", "out.bak"},
	} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		data := fs.String("data", "", "")
		force := fs.Bool("force", false, "")
		file, err := parseWithFile(fs, args)
		if err != nil || file != "out.bak" || *data != "/d" || !*force {
			t.Errorf("%q: file %q data %q force %v err %v", args, file, *data, *force, err)
		}
	}
	for _, args := range [][]string{{}, {"a", "b"}, {"--data", "/d"}} {
		fs := flag.NewFlagSet("x", flag.ContinueOnError)
		fs.SetOutput(io.Discard)
		fs.String("data", "", "")
		if file, err := parseWithFile(fs, args); err == nil {
			t.Errorf("%q: accepted, file %q", args, file)
		}
	}
}

// makeData creates a server data directory with a store holding one host.
func makeData(t *testing.T) string {
	t.Helper()
	data := t.TempDir()
	st, err := storage.Open(storeDir(data))
	if err != nil {
		t.Fatal(err)
	}
	if err := st.CreateHost(storage.Host{ID: "h1", Name: "web-1", CreatedAt: time.Now().UTC()}); err != nil {
		t.Fatal(err)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	return data
}

// The offline path: with the server stopped, backup-store reads the store
// directly, and restore-store brings it back in a new directory.
func TestBackupAndRestoreOffline(t *testing.T) {
	data := makeData(t)
	out := filepath.Join(t.TempDir(), "store.bak")
	if err := runBackupStore([]string{out, "--data", data}); err != nil {
		t.Fatal(err)
	}
	if st, err := os.Stat(out); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("backup file: %v, %v", st, err)
	}
	if err := runBackupStore([]string{out, "--data", data}); err == nil || !strings.Contains(err.Error(), "exists") {
		t.Fatalf("overwrote an existing backup: %v", err)
	}
	leftovers, _ := filepath.Glob(filepath.Join(filepath.Dir(out), ".*partial*"))
	if len(leftovers) > 0 {
		t.Errorf("temporary files left: %v", leftovers)
	}

	// A wrong directory is not mistaken for an empty store.
	if err := runBackupStore([]string{out + "2", "--data", t.TempDir()}); err == nil || !strings.Contains(err.Error(), "no store") {
		t.Fatalf("backup of a directory without a store: %v", err)
	}

	dst := filepath.Join(t.TempDir(), "new")
	key := filepath.Join(storeDir(data), "master.key")
	if err := runRestoreStore([]string{out, "--data", dst, "--master-key", key}); err != nil {
		t.Fatal(err)
	}
	st, err := storage.Open(storeDir(dst))
	if err != nil {
		t.Fatal(err)
	}
	if h, err := st.GetHost("h1"); err != nil || h.Name != "web-1" {
		t.Errorf("restored host: %+v, %v", h, err)
	}
	st.Close()

	// Not into a directory that holds anything.
	if err := runRestoreStore([]string{out, "--data", dst, "--master-key", key}); err == nil || !strings.Contains(err.Error(), "not empty") {
		t.Fatalf("restore into a used directory: %v", err)
	}
}

func TestRestoreRefusesAnotherKeyAndCleansUp(t *testing.T) {
	data := makeData(t)
	out := filepath.Join(t.TempDir(), "store.bak")
	if err := runBackupStore([]string{out, "--data", data}); err != nil {
		t.Fatal(err)
	}
	other := filepath.Join(t.TempDir(), "other.key")
	if err := os.WriteFile(other, []byte(strings.Repeat("k", 32)), 0o600); err != nil {
		t.Fatal(err)
	}
	dst := t.TempDir() // exists and is empty
	err := runRestoreStore([]string{out, "--data", dst, "--master-key", other})
	if err == nil || !strings.Contains(err.Error(), "master key") {
		t.Fatalf("restore with another key: %v", err)
	}
	if entries, _ := os.ReadDir(dst); len(entries) != 0 {
		t.Errorf("a failed restore left %v behind", entries)
	}
}

func TestCheckBackupFileRefusesDamage(t *testing.T) {
	data := makeData(t)
	out := filepath.Join(t.TempDir(), "store.bak")
	if err := runBackupStore([]string{out, "--data", data}); err != nil {
		t.Fatal(err)
	}
	n, err := checkBackupFile(out)
	if err != nil || n < 3 { // schema, key check, host
		t.Fatalf("checkBackupFile = %d, %v", n, err)
	}
	b, _ := os.ReadFile(out)
	cut := filepath.Join(t.TempDir(), "cut.bak")
	os.WriteFile(cut, b[:len(b)-5], 0o600)
	if _, err := checkBackupFile(cut); err == nil || !strings.Contains(err.Error(), "truncated") {
		t.Errorf("truncated backup: %v", err)
	}
	empty := filepath.Join(t.TempDir(), "empty.bak")
	os.WriteFile(empty, nil, 0o600)
	if _, err := checkBackupFile(empty); err == nil {
		t.Error("an empty file passed as a backup")
	}
	junk := filepath.Join(t.TempDir(), "junk.bak")
	os.WriteFile(junk, []byte("<html>not a backup</html>"), 0o600)
	if _, err := checkBackupFile(junk); err == nil {
		t.Error("junk passed as a backup")
	}
}
