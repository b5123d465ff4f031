// Package testenv locates the pinned external programs (restic, rest-server)
// that `make tools` builds into .tools/bin, for tests. A missing tool fails
// the test: it is never a skip.
package testenv

import (
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"testing"
)

// Root is the repository root (the directory holding go.mod).
func Root(t testing.TB) string {
	t.Helper()
	_, file, _, ok := runtime.Caller(0)
	if !ok {
		t.Fatal("testenv: cannot locate source file")
	}
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", ".."))
}

func tool(t testing.TB, name, env string) string {
	t.Helper()
	if p := os.Getenv(env); p != "" {
		return p
	}
	p := filepath.Join(Root(t), ".tools", "bin", name)
	if _, err := os.Stat(p); err != nil {
		t.Fatalf("testenv: %s not found at %s (run `make tools`): %v", name, p, err)
	}
	return p
}

// Restic is the pinned restic binary (RM_TEST_RESTIC overrides).
func Restic(t testing.TB) string { return tool(t, "restic", "RM_TEST_RESTIC") }

// RestServer is the pinned rest-server binary (RM_TEST_REST_SERVER overrides).
func RestServer(t testing.TB) string { return tool(t, "rest-server", "RM_TEST_REST_SERVER") }

// Restic014 is the pinned restic 0.14.0 (Debian 12's version, the oldest the
// runner supports; RM_TEST_RESTIC014 overrides).
func Restic014(t testing.TB) string { return tool(t, "restic-0.14.0", "RM_TEST_RESTIC014") }

// FreePort returns a loopback TCP port that was free a moment ago. Tests that
// restart a server on the same address need a fixed port, so ":0" will not do.
func FreePort(t testing.TB) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("testenv: listen: %v", err)
	}
	defer l.Close()
	return "127.0.0.1:" + strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
}
