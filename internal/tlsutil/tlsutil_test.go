package tlsutil

import (
	"crypto/tls"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// handshake serves one TLS connection with srv and dials it with cli.
func handshake(t *testing.T, srv *Server, cli *tls.Config) error {
	t.Helper()
	ln, err := tls.Listen("tcp", "127.0.0.1:0", srv.Config)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := ln.Accept()
		if err == nil {
			_ = c.(*tls.Conn).Handshake()
			_, _ = io.Copy(io.Discard, c)
			c.Close()
		}
	}()
	c, err := tls.Dial("tcp", ln.Addr().String(), cli)
	if err != nil {
		return err
	}
	return c.Close()
}

func TestPinnedCA(t *testing.T) {
	dirA, dirB := t.TempDir(), t.TempDir()
	a, err := LoadOrCreate(dirA, []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	b, err := LoadOrCreate(dirB, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	if a.CAFingerprint == b.CAFingerprint || len(a.CAFingerprint) != 64 {
		t.Fatalf("fingerprints %q %q", a.CAFingerprint, b.CAFingerprint)
	}
	if err := handshake(t, a, ClientConfig(a.CAFingerprint, "127.0.0.1")); err != nil {
		t.Fatalf("pinned client refused its own server: %v", err)
	}
	err = handshake(t, b, ClientConfig(a.CAFingerprint, "127.0.0.1"))
	if err == nil || !errors.Is(err, ErrPin) && !containsPin(err) {
		t.Fatalf("client pinned to A accepted B: %v", err)
	}
	// Without a pin, an unknown CA is refused by the system roots.
	if err := handshake(t, a, ClientConfig("", "127.0.0.1")); err == nil {
		t.Fatal("unpinned client accepted a private CA")
	}
	// The key files are private; a restart reuses the same CA and certificate.
	for _, f := range []string{"ca.key", "server.key"} {
		st, err := os.Stat(filepath.Join(dirA, f))
		if err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v %v", f, st.Mode().Perm(), err)
		}
	}
	a2, err := LoadOrCreate(dirA, []string{"127.0.0.1"})
	if err != nil || a2.CAFingerprint != a.CAFingerprint {
		t.Fatalf("reload changed the CA: %v", err)
	}
	// A new name reissues the leaf from the same CA.
	a3, err := LoadOrCreate(dirA, []string{"127.0.0.1", "backup.example.org"})
	if err != nil || a3.CAFingerprint != a.CAFingerprint {
		t.Fatalf("reissue: %v", err)
	}
	if err := handshake(t, a3, ClientConfig(a.CAFingerprint, "backup.example.org")); err != nil {
		t.Fatalf("reissued cert for a new name: %v", err)
	}
	if NormalizeFingerprint("AB:CD") != "abcd" {
		t.Error("NormalizeFingerprint")
	}
}

func containsPin(err error) bool {
	return strings.Contains(err.Error(), "pinned CA")
}
