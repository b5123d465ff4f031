package tlsutil

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
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

// servedCert is the leaf a handshake with srv presents.
func servedCert(t *testing.T, srv *Server, cli *tls.Config) *x509.Certificate {
	t.Helper()
	var leaf *x509.Certificate
	verify := cli.VerifyPeerCertificate
	cli = cli.Clone()
	cli.VerifyPeerCertificate = func(raw [][]byte, chains [][]*x509.Certificate) error {
		leaf, _ = x509.ParseCertificate(raw[0])
		return verify(raw, chains)
	}
	if err := handshake(t, srv, cli); err != nil {
		t.Fatalf("handshake: %v", err)
	}
	return leaf
}

// A running server whose generated certificate nears its expiry renews it
// by the same CA: the next handshake gets the new one, which the client
// pinned to the CA accepts, and the files hold it for the next start.
func TestRenewNearExpiry(t *testing.T) {
	dir := t.TempDir()
	s, err := LoadOrCreate(dir, []string{"127.0.0.1", "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	cli := ClientConfig(s.CAFingerprint, "localhost")
	if renewed, err := s.Renew(time.Now()); renewed || err != nil {
		t.Fatalf("a fresh certificate was renewed: %v %v", renewed, err)
	}
	// The server has run for most of two years: its certificate expires
	// in ten days.
	pair, err := s.issue.issue(time.Now().Add(10 * 24 * time.Hour))
	if err != nil {
		t.Fatal(err)
	}
	s.setCert(pair, s.issue.ca)
	old := servedCert(t, s, cli)
	if time.Until(old.NotAfter) > 11*24*time.Hour {
		t.Fatalf("setup: served certificate expires %v", old.NotAfter)
	}

	renewed, err := s.Renew(time.Now())
	if err != nil || !renewed {
		t.Fatalf("a certificate ten days from expiry was not renewed: %v %v", renewed, err)
	}
	cur := servedCert(t, s, cli)
	if cur.SerialNumber.Cmp(old.SerialNumber) == 0 || time.Until(cur.NotAfter) < 365*24*time.Hour {
		t.Errorf("after renewal the server presents serial %v expiring %v", cur.SerialNumber, cur.NotAfter)
	}
	if err := cur.CheckSignatureFrom(s.issue.ca); err != nil {
		t.Errorf("the renewed certificate is not issued by the pinned CA: %v", err)
	}
	// A restart loads the renewed certificate and the same CA.
	s2, err := LoadOrCreate(dir, []string{"127.0.0.1", "localhost"})
	if err != nil || s2.CAFingerprint != s.CAFingerprint {
		t.Fatalf("restart: %v, CA %s → %s", err, s.CAFingerprint, s2.CAFingerprint)
	}
	if again := servedCert(t, s2, cli); again.SerialNumber.Cmp(cur.SerialNumber) != 0 {
		t.Error("a restart did not load the renewed certificate from disk")
	}
	// An operator's own certificate is left alone.
	own, err := LoadFiles(filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	if renewed, err := own.Renew(time.Now().Add(5 * 365 * 24 * time.Hour)); renewed || err != nil {
		t.Errorf("an operator's certificate was renewed: %v %v", renewed, err)
	}
}
