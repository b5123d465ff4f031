// Package tlsutil makes and pins the certificates of the embedded default:
// a private CA and a server certificate generated on first start and kept in
// the data directory, and a client configuration that trusts exactly that
// CA by its SHA-256 fingerprint (given to agents at enrolment).
package tlsutil

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"encoding/pem"
	"errors"
	"fmt"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"time"

	"github.com/restic-manager/restic-manager/internal/loop"
)

// Fingerprint is the lowercase hex SHA-256 of a certificate's DER bytes.
func Fingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	return hex.EncodeToString(sum[:])
}

// NormalizeFingerprint accepts hex with or without colons, any case.
func NormalizeFingerprint(fp string) string {
	return strings.ToLower(strings.ReplaceAll(strings.TrimSpace(fp), ":", ""))
}

// Server is the TLS material a server presents.
type Server struct {
	// Config serves the current certificate (GetCertificate): a renewed
	// one is used from the next handshake on, without a restart.
	Config *tls.Config
	// CAFingerprint pins the issuing CA; empty when the chain is issued by a
	// public CA that clients verify with their system roots.
	CAFingerprint string

	cert  atomic.Pointer[tls.Certificate]
	issue *issuer // nil for an operator's own certificate
}

// issuer is what renews a generated certificate: the CA and where the
// certificate lives.
type issuer struct {
	ca                *x509.Certificate
	caKey             *ecdsa.PrivateKey
	hosts             []string
	certPath, keyPath string
}

// Validity of generated server certificates, and how long before expiry
// one is renewed (at start, or by RenewLoop while running).
const (
	certValidity = 2 * 365 * 24 * time.Hour
	renewBefore  = 30 * 24 * time.Hour
)

// LoadOrCreate returns the server TLS configuration kept in dir, creating a
// CA and a server certificate for hosts on first use. A certificate is
// reissued (by the same CA) when hosts gain a name it does not cover, and
// when it expires within 30 days (see also RenewLoop).
func LoadOrCreate(dir string, hosts []string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	caCert, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	is := &issuer{ca: caCert, caKey: caKey, hosts: hosts,
		certPath: filepath.Join(dir, "server.pem"), keyPath: filepath.Join(dir, "server.key")}
	if pair, err := tls.LoadX509KeyPair(is.certPath, is.keyPath); err == nil {
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err == nil && covers(leaf, hosts) && time.Until(leaf.NotAfter) > renewBefore {
			return serverFrom(pair, caCert, is), nil
		}
	}
	pair, err := is.issue(time.Now().Add(certValidity))
	if err != nil {
		return nil, err
	}
	return serverFrom(pair, caCert, is), nil
}

// Renew reissues a generated certificate, by the same CA (agents pin the
// CA, not the certificate), when it expires within 30 days of now. It
// reports whether it did. An operator's own certificate (LoadFiles) is
// never renewed here.
func (s *Server) Renew(now time.Time) (bool, error) {
	if s.issue == nil {
		return false, nil
	}
	cur := s.cert.Load()
	if leaf, err := x509.ParseCertificate(cur.Certificate[0]); err == nil && leaf.NotAfter.Sub(now) > renewBefore {
		return false, nil
	}
	pair, err := s.issue.issue(now.Add(certValidity))
	if err != nil {
		return false, err
	}
	s.setCert(pair, s.issue.ca)
	return true, nil
}

// RenewLoop checks the certificate twice a day until ctx ends and renews
// it when due, so a server that runs for years never serves an expired
// certificate.
func (s *Server) RenewLoop(ctx context.Context, log *slog.Logger) {
	if s.issue == nil {
		return
	}
	const every = 12 * time.Hour
	loop.Every(ctx, every, every, func(context.Context) {
		renewed, err := s.Renew(time.Now())
		switch {
		case err != nil:
			log.Error("the server certificate is due for renewal but could not be renewed", "error", err)
		case renewed:
			log.Info("server certificate renewed by the same CA", "not_after", s.NotAfter())
		}
	})
}

// NotAfter is when the certificate served now expires.
func (s *Server) NotAfter() time.Time {
	leaf, err := x509.ParseCertificate(s.cert.Load().Certificate[0])
	if err != nil {
		return time.Time{}
	}
	return leaf.NotAfter
}

// LoadFiles uses an operator's own certificate and key. When the chain file
// ends in a self-signed CA, that CA is pinned for agents; otherwise agents
// use their system roots.
func LoadFiles(certFile, keyFile string) (*Server, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	s := &Server{}
	s.cert.Store(&pair)
	s.Config = s.config()
	last, err := x509.ParseCertificate(pair.Certificate[len(pair.Certificate)-1])
	if err == nil && last.IsCA && last.CheckSignatureFrom(last) == nil {
		s.CAFingerprint = Fingerprint(last.Raw)
	}
	return s, nil
}

func serverFrom(pair tls.Certificate, ca *x509.Certificate, is *issuer) *Server {
	s := &Server{CAFingerprint: Fingerprint(ca.Raw), issue: is}
	s.setCert(pair, ca)
	s.Config = s.config()
	return s
}

// setCert makes pair, issued by ca, the certificate served from now on.
func (s *Server) setCert(pair tls.Certificate, ca *x509.Certificate) {
	// Send the CA along so that a pinning client can find it in the chain.
	pair.Certificate = append(pair.Certificate[:1:1], ca.Raw)
	s.cert.Store(&pair)
}

func (s *Server) config() *tls.Config {
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load(), nil
		},
	}
}

func covers(leaf *x509.Certificate, hosts []string) bool {
	for _, h := range hosts {
		if leaf.VerifyHostname(h) != nil {
			return false
		}
	}
	return true
}

func loadOrCreateCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "ca.key")
	if cb, err := os.ReadFile(certPath); err == nil {
		kb, err := os.ReadFile(keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("tls: CA key: %w", err)
		}
		return parsePair(cb, kb)
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("tls: CA: %w", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial(),
		Subject:               pkix.Name{CommonName: "restic-manager CA", Organization: []string{"restic-manager"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().AddDate(20, 0, 0),
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: create CA: %w", err)
	}
	if err := writePEM(keyPath, "EC PRIVATE KEY", mustMarshalKey(key), 0o600); err != nil {
		return nil, nil, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return nil, nil, err
	}
	cert, err := x509.ParseCertificate(der)
	return cert, key, err
}

// issue makes a server certificate valid until notAfter and writes it.
func (is *issuer) issue(notAfter time.Time) (tls.Certificate, error) {
	ca, caKey, hosts, certPath, keyPath := is.ca, is.caKey, is.hosts, is.certPath, is.keyPath
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "restic-manager server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     minTime(notAfter, ca.NotAfter),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			tmpl.IPAddresses = append(tmpl.IPAddresses, ip)
		} else if h != "" {
			tmpl.DNSNames = append(tmpl.DNSNames, h)
		}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
	if err != nil {
		return tls.Certificate{}, fmt.Errorf("tls: issue: %w", err)
	}
	kb := mustMarshalKey(key)
	if err := writePEM(keyPath, "EC PRIVATE KEY", kb, 0o600); err != nil {
		return tls.Certificate{}, err
	}
	if err := writePEM(certPath, "CERTIFICATE", der, 0o644); err != nil {
		return tls.Certificate{}, err
	}
	return tls.X509KeyPair(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}))
}

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, errors.New("tls: CA files are not PEM")
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: CA: %w", err)
	}
	key, err := x509.ParseECPrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, fmt.Errorf("tls: CA key: %w", err)
	}
	return cert, key, nil
}

func mustMarshalKey(k *ecdsa.PrivateKey) []byte {
	b, err := x509.MarshalECPrivateKey(k)
	if err != nil {
		panic(err)
	}
	return b
}

func serial() *big.Int {
	n, _ := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
	return n
}

func writePEM(path, typ string, der []byte, mode os.FileMode) error {
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	tmp := path + ".tmp"
	if err := os.WriteFile(tmp, b, mode); err != nil {
		return fmt.Errorf("tls: %w", err)
	}
	return os.Rename(tmp, path)
}

// ClientConfig trusts only the CA whose fingerprint is given: the server's
// chain must contain that CA and the leaf must verify against it (for
// serverName, when set). With an empty fingerprint the system roots apply.
func ClientConfig(fingerprint, serverName string) *tls.Config {
	fp := NormalizeFingerprint(fingerprint)
	if fp == "" {
		return &tls.Config{ServerName: serverName, MinVersion: tls.VersionTLS12}
	}
	return &tls.Config{
		MinVersion: tls.VersionTLS12,
		// Verification is done below against the pinned CA only; the
		// default verifier would consult the system roots instead.
		InsecureSkipVerify: true, //nolint:gosec // replaced by VerifyPeerCertificate
		VerifyPeerCertificate: func(raw [][]byte, _ [][]*x509.Certificate) error {
			return verifyPinned(raw, fp, serverName)
		},
	}
}

// ErrPin is returned when the server's chain does not lead to the pinned CA.
var ErrPin = errors.New("server certificate is not issued by the pinned CA")

func verifyPinned(raw [][]byte, fp, serverName string) error {
	if len(raw) == 0 {
		return ErrPin
	}
	var ca *x509.Certificate
	certs := make([]*x509.Certificate, 0, len(raw))
	for _, r := range raw {
		c, err := x509.ParseCertificate(r)
		if err != nil {
			return fmt.Errorf("tls: %w", err)
		}
		certs = append(certs, c)
		if Fingerprint(r) == fp {
			ca = c
		}
	}
	if ca == nil {
		return fmt.Errorf("%w (fingerprint %s… not in the chain)", ErrPin, fp[:min(12, len(fp))])
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca)
	inter := x509.NewCertPool()
	for _, c := range certs[1:] {
		inter.AddCert(c)
	}
	if _, err := certs[0].Verify(x509.VerifyOptions{Roots: roots, Intermediates: inter, DNSName: serverName}); err != nil {
		return fmt.Errorf("%w: %v", ErrPin, err)
	}
	return nil
}
