// Package tlsutil makes and pins the certificates of the embedded default:
// a private CA and a server certificate generated on first start and kept in
// the data directory, and a client configuration that trusts exactly that
// CA by its SHA-256 fingerprint (given to agents at enrolment).
package tlsutil

import (
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
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"
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
	Config *tls.Config
	// CAFingerprint pins the issuing CA; empty when the chain is issued by a
	// public CA that clients verify with their system roots.
	CAFingerprint string
}

// LoadOrCreate returns the server TLS configuration kept in dir, creating a
// CA and a server certificate for hosts on first use. A certificate is
// reissued (by the same CA) when hosts gain a name it does not cover.
func LoadOrCreate(dir string, hosts []string) (*Server, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	caCert, caKey, err := loadOrCreateCA(dir)
	if err != nil {
		return nil, err
	}
	certPath, keyPath := filepath.Join(dir, "server.pem"), filepath.Join(dir, "server.key")
	if pair, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		leaf, err := x509.ParseCertificate(pair.Certificate[0])
		if err == nil && covers(leaf, hosts) && time.Until(leaf.NotAfter) > 30*24*time.Hour {
			return serverFrom(pair, caCert), nil
		}
	}
	pair, err := issue(caCert, caKey, hosts, certPath, keyPath)
	if err != nil {
		return nil, err
	}
	return serverFrom(pair, caCert), nil
}

// LoadFiles uses an operator's own certificate and key. When the chain file
// ends in a self-signed CA, that CA is pinned for agents; otherwise agents
// use their system roots.
func LoadFiles(certFile, keyFile string) (*Server, error) {
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("tls: %w", err)
	}
	s := &Server{Config: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}}
	last, err := x509.ParseCertificate(pair.Certificate[len(pair.Certificate)-1])
	if err == nil && last.IsCA && last.CheckSignatureFrom(last) == nil {
		s.CAFingerprint = Fingerprint(last.Raw)
	}
	return s, nil
}

func serverFrom(pair tls.Certificate, ca *x509.Certificate) *Server {
	// Send the CA along so that a pinning client can find it in the chain.
	pair.Certificate = append(pair.Certificate[:1:1], ca.Raw)
	return &Server{
		Config:        &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12},
		CAFingerprint: Fingerprint(ca.Raw),
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

func issue(ca *x509.Certificate, caKey *ecdsa.PrivateKey, hosts []string, certPath, keyPath string) (tls.Certificate, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, err
	}
	tmpl := &x509.Certificate{
		SerialNumber: serial(),
		Subject:      pkix.Name{CommonName: "restic-manager server"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().AddDate(2, 0, 0),
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
