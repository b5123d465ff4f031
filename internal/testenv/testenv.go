// Package testenv locates the pinned external programs (restic, rest-server)
// that `make tools` builds into .tools/bin, for tests. A missing tool fails
// the test: it is never a skip.
package testenv

import (
	"fmt"
	"math/rand/v2"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
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

// Versitygw is the pinned versitygw, the S3-compatible server the backend
// tests run (RM_TEST_VERSITYGW overrides).
func Versitygw(t testing.TB) string { return tool(t, "versitygw", "RM_TEST_VERSITYGW") }

// FreePort returns a loopback TCP port that was free a moment ago. Tests that
// restart a server on the same address need a fixed port, so ":0" will not do.
//
// Ports come from below the kernel's ephemeral range: a port from that range
// (what ":0" hands out) can be taken by any outgoing connection on the machine
// between this check and the server's bind, or while a killed server is
// restarted on it — which happened whenever a load test was connecting
// thousands of clients at the same time.
func FreePort(t testing.TB) string {
	t.Helper()
	addr, err := FreeAddr()
	if err != nil {
		t.Fatal(err)
	}
	return addr
}

// FreeAddr is FreePort for code that is not a test (the fleet simulator).
func FreeAddr() (string, error) {
	lo := ephemeralLow()
	const base = 10000
	portsMu.Lock()
	defer portsMu.Unlock()
	for range 200 {
		p := base + rand.IntN(lo-base)
		if portsGiven[p] {
			continue
		}
		l, err := net.Listen("tcp", "127.0.0.1:"+strconv.Itoa(p))
		if err != nil {
			continue
		}
		l.Close()
		portsGiven[p] = true
		return "127.0.0.1:" + strconv.Itoa(p), nil
	}
	return "", fmt.Errorf("testenv: no free port below %d", lo)
}

var (
	portsMu    sync.Mutex
	portsGiven = map[int]bool{} // never hand out one port twice in a process
)

// ephemeralLow is the first port of the kernel's ephemeral range (32768 on
// Linux by default; 49152 elsewhere).
func ephemeralLow() int {
	if b, err := os.ReadFile("/proc/sys/net/ipv4/ip_local_port_range"); err == nil {
		if f := strings.Fields(string(b)); len(f) == 2 {
			if n, err := strconv.Atoi(f[0]); err == nil && n > 11000 {
				return n
			}
		}
	}
	if runtime.GOOS == "linux" {
		return 32768
	}
	return 49152
}

// Axe is the pinned axe-core script (axe.min.js) that `make axe` fetches
// into .tools/axe, for the browser tests' accessibility checks
// (RM_TEST_AXE overrides). A missing script fails the test.
func Axe(t testing.TB) string {
	t.Helper()
	if p := os.Getenv("RM_TEST_AXE"); p != "" {
		return p
	}
	found, _ := filepath.Glob(filepath.Join(Root(t), ".tools", "axe", "axe-core-*.min.js"))
	if len(found) != 1 {
		t.Fatalf("testenv: want one axe-core script in .tools/axe (run `make axe`), found %d: %v", len(found), found)
	}
	return found[0]
}
