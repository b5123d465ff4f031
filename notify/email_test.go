package notify

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"io"
	"log"
	"math/big"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-sasl"
	"github.com/emersion/go-smtp"
)

const (
	smtpUser = "alerts@example.com"
	smtpPass = "Pa55-w0rd-s3cret"
)

// selfSigned makes a certificate for 127.0.0.1/localhost and a pool that
// trusts it.
func selfSigned(t *testing.T) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "notify test smtp"},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AddCert(cert)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// received is one message accepted by the test server.
type received struct {
	from   string
	rcpts  []string
	data   []byte
	tls    bool
	authed string
}

// backend is a go-smtp backend that requires PLAIN authentication before
// MAIL FROM and records what it sees.
type backend struct {
	mu        sync.Mutex
	authTries []string // "user:pass" of every AUTH attempt
	msgs      []received
}

func (b *backend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{b: b, c: c}, nil
}

type session struct {
	b    *backend
	c    *smtp.Conn
	user string
	cur  received
}

func (s *session) AuthMechanisms() []string { return []string{sasl.Plain} }

func (s *session) Auth(mech string) (sasl.Server, error) {
	return sasl.NewPlainServer(func(identity, username, password string) error {
		s.b.mu.Lock()
		s.b.authTries = append(s.b.authTries, username+":"+password)
		s.b.mu.Unlock()
		if username != smtpUser || password != smtpPass {
			return errors.New("invalid credentials")
		}
		s.user = username
		return nil
	}), nil
}

func (s *session) Mail(from string, _ *smtp.MailOptions) error {
	if s.user == "" {
		return &smtp.SMTPError{Code: 530, EnhancedCode: smtp.EnhancedCode{5, 7, 0}, Message: "Authentication required"}
	}
	_, isTLS := s.c.TLSConnectionState()
	s.cur = received{from: from, tls: isTLS, authed: s.user}
	return nil
}

func (s *session) Rcpt(to string, _ *smtp.RcptOptions) error {
	s.cur.rcpts = append(s.cur.rcpts, to)
	return nil
}

func (s *session) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.cur.data = b
	s.b.mu.Lock()
	s.b.msgs = append(s.b.msgs, s.cur)
	s.b.mu.Unlock()
	return nil
}

func (s *session) Reset()        { s.cur = received{} }
func (s *session) Logout() error { return nil }

// noAuthSession accepts mail without authentication (for the no-credential
// opportunistic case).
type noAuthBackend struct{ backend }

func (b *noAuthBackend) NewSession(c *smtp.Conn) (smtp.Session, error) {
	return &session{b: &b.backend, c: c, user: "(anonymous)"}, nil
}

// wireLog records every byte the server reads from clients.
type wireLog struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (w *wireLog) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.buf.String()
}

type logListener struct {
	net.Listener
	log *wireLog
}

func (l logListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return &logConn{Conn: c, log: l.log}, nil
}

type logConn struct {
	net.Conn
	log *wireLog
}

func (c *logConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	c.log.mu.Lock()
	c.log.buf.Write(p[:n])
	c.log.mu.Unlock()
	return n, err
}

type smtpServer struct {
	host, port string
	wire       *wireLog
}

// startSMTP runs a real go-smtp server on 127.0.0.1. With cert non-nil it
// offers STARTTLS and only accepts AUTH after it; with cert nil it offers no
// STARTTLS and accepts AUTH in clear text (a server that would happily take
// credentials: the client must refuse on its own).
func startSMTP(t *testing.T, be smtp.Backend, cert *tls.Certificate) smtpServer {
	t.Helper()
	srv := smtp.NewServer(be)
	srv.Domain = "mx.test"
	srv.ReadTimeout = 10 * time.Second
	srv.WriteTimeout = 10 * time.Second
	srv.ErrorLog = log.New(io.Discard, "", 0)
	if cert != nil {
		srv.TLSConfig = &tls.Config{Certificates: []tls.Certificate{*cert}, MinVersion: tls.VersionTLS12}
	} else {
		srv.AllowInsecureAuth = true
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	wl := &wireLog{}
	go func() { _ = srv.Serve(logListener{ln, wl}) }()
	t.Cleanup(func() { _ = srv.Close() })
	host, port, _ := net.SplitHostPort(ln.Addr().String())
	return smtpServer{host: host, port: port, wire: wl}
}

func (s smtpServer) config(mod func(*Config)) Config {
	port, _ := strconv.Atoi(s.port)
	c := Config{
		Kind:     KindEmail,
		SMTPHost: s.host,
		SMTPPort: port,
		Username: smtpUser,
		Password: smtpPass,
		From:     "Restic Manager <alerts@example.com>",
		To:       []string{"ops@example.com", "Oncall Team <oncall@example.org>"},
	}
	if mod != nil {
		mod(&c)
	}
	return c
}

// assertNoCredentials checks that neither the password nor the PLAIN blob
// crossed the wire.
func assertNoCredentials(t *testing.T, s smtpServer) {
	t.Helper()
	wire := s.wire.String()
	blob := base64.StdEncoding.EncodeToString([]byte("\x00" + smtpUser + "\x00" + smtpPass))
	if strings.Contains(wire, smtpPass) || strings.Contains(wire, blob) || strings.Contains(strings.ToUpper(wire), "AUTH ") {
		t.Errorf("credentials or AUTH sent in clear text; wire:\n%s", wire)
	}
}

func TestEmailStartTLSAuthDelivery(t *testing.T) {
	cert, pool := selfSigned(t)
	be := &backend{}
	srv := startSMTP(t, be, &cert)

	m := sampleMessage()
	m.Title = "Sauvegarde échouée sur web1"
	m.Text = "restic exited 1\n.\nline after a lone dot = and a long line " + strings.Repeat("x", 120)
	err := send(t, srv.config(nil), m, WithTLSConfig(&tls.Config{RootCAs: pool}))
	if err != nil {
		t.Fatalf("Send: %v", err)
	}

	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.msgs) != 1 {
		t.Fatalf("server got %d messages", len(be.msgs))
	}
	got := be.msgs[0]
	if !got.tls || got.authed != smtpUser {
		t.Errorf("tls=%v authed=%q", got.tls, got.authed)
	}
	if got.from != "alerts@example.com" || strings.Join(got.rcpts, ",") != "ops@example.com,oncall@example.org" {
		t.Errorf("envelope from %q rcpts %v", got.from, got.rcpts)
	}
	// Credentials were only sent inside TLS.
	if strings.Contains(srv.wire.String(), smtpPass) {
		t.Error("password visible on the wire")
	}

	msg, err := mail.ReadMessage(bytes.NewReader(got.data))
	if err != nil {
		t.Fatalf("parse message: %v\n%s", err, got.data)
	}
	from, err := mail.ParseAddress(msg.Header.Get("From"))
	if err != nil || from.Name != "Restic Manager" || from.Address != "alerts@example.com" {
		t.Errorf("From = %q (%v)", msg.Header.Get("From"), err)
	}
	to, err := msg.Header.AddressList("To")
	if err != nil || len(to) != 2 || to[0].Address != "ops@example.com" || to[1].Address != "oncall@example.org" || to[1].Name != "Oncall Team" {
		t.Errorf("To = %q (%v)", msg.Header.Get("To"), err)
	}
	subj, err := new(mime.WordDecoder).DecodeHeader(msg.Header.Get("Subject"))
	if err != nil || subj != "[FIRING critical] Sauvegarde échouée sur web1" {
		t.Errorf("Subject = %q (%v)", subj, err)
	}
	if msg.Header.Get("Date") != testNow.Format(time.RFC1123Z) || msg.Header.Get("Message-ID") == "" ||
		msg.Header.Get("Auto-Submitted") != "auto-generated" || msg.Header.Get("X-RM-Alert-ID") != "01JALERT" {
		t.Errorf("headers %v", msg.Header)
	}
	if ct := msg.Header.Get("Content-Type"); ct != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type = %q", ct)
	}
	body, err := io.ReadAll(quotedprintable.NewReader(msg.Body))
	if err != nil {
		t.Fatal(err)
	}
	wantBody := strings.ReplaceAll(details(m), "\n", "\r\n") + "\r\n"
	if string(body) != wantBody {
		t.Errorf("body\n got %q\nwant %q", body, wantBody)
	}
}

func TestEmailRequiredRefusesWithoutStartTLS(t *testing.T) {
	be := &backend{}
	srv := startSMTP(t, be, nil) // no STARTTLS, would accept AUTH in clear
	for _, policy := range []string{"", StartTLSRequired} {
		err := send(t, srv.config(func(c *Config) { c.StartTLS = policy }), sampleMessage())
		if !errors.Is(err, ErrNoStartTLS) {
			t.Fatalf("policy %q: err = %v, want ErrNoStartTLS", policy, err)
		}
		if strings.Contains(err.Error(), smtpPass) {
			t.Errorf("error leaks password: %v", err)
		}
	}
	assertNoCredentials(t, srv)
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.authTries) != 0 || len(be.msgs) != 0 {
		t.Errorf("server saw auth %v msgs %d", be.authTries, len(be.msgs))
	}
}

func TestEmailOpportunistic(t *testing.T) {
	t.Run("no STARTTLS offered: credentials refused", func(t *testing.T) {
		be := &backend{}
		srv := startSMTP(t, be, nil)
		err := send(t, srv.config(func(c *Config) { c.StartTLS = StartTLSOpportunistic }), sampleMessage())
		if !errors.Is(err, ErrInsecureAuth) {
			t.Fatalf("err = %v, want ErrInsecureAuth", err)
		}
		assertNoCredentials(t, srv)
	})
	t.Run("no STARTTLS offered, no auth: delivered in clear", func(t *testing.T) {
		be := &noAuthBackend{}
		srv := startSMTP(t, be, nil)
		err := send(t, srv.config(func(c *Config) {
			c.StartTLS = StartTLSOpportunistic
			c.Username, c.Password = "", ""
		}), sampleMessage())
		if err != nil {
			t.Fatal(err)
		}
		be.mu.Lock()
		defer be.mu.Unlock()
		if len(be.msgs) != 1 || be.msgs[0].tls {
			t.Fatalf("msgs %+v", be.msgs)
		}
	})
	t.Run("STARTTLS offered: used", func(t *testing.T) {
		cert, pool := selfSigned(t)
		be := &backend{}
		srv := startSMTP(t, be, &cert)
		err := send(t, srv.config(func(c *Config) { c.StartTLS = StartTLSOpportunistic }), sampleMessage(),
			WithTLSConfig(&tls.Config{RootCAs: pool}))
		if err != nil {
			t.Fatal(err)
		}
		be.mu.Lock()
		defer be.mu.Unlock()
		if len(be.msgs) != 1 || !be.msgs[0].tls {
			t.Fatalf("msgs %+v", be.msgs)
		}
	})
}

func TestEmailNoneOnLoopbackMayAuthInClear(t *testing.T) {
	be := &backend{}
	srv := startSMTP(t, be, nil)
	if err := send(t, srv.config(func(c *Config) { c.StartTLS = StartTLSNone }), sampleMessage()); err != nil {
		t.Fatal(err)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.msgs) != 1 || be.msgs[0].authed != smtpUser || be.msgs[0].tls {
		t.Fatalf("msgs %+v", be.msgs)
	}
	// Sanity check of the wire log used by assertNoCredentials: here the
	// PLAIN blob must be visible.
	blob := base64.StdEncoding.EncodeToString([]byte("\x00" + smtpUser + "\x00" + smtpPass))
	if !strings.Contains(srv.wire.String(), blob) {
		t.Errorf("wire log misses the clear-text AUTH:\n%s", srv.wire.String())
	}
}

func TestEmailUntrustedCertificate(t *testing.T) {
	cert, _ := selfSigned(t)
	be := &backend{}
	srv := startSMTP(t, be, &cert)
	err := send(t, srv.config(nil), sampleMessage()) // system roots only
	if err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("err = %v, want STARTTLS certificate failure", err)
	}
	assertNoCredentials(t, srv)
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.authTries) != 0 {
		t.Errorf("auth attempted: %v", be.authTries)
	}
}

func TestEmailWrongPassword(t *testing.T) {
	cert, pool := selfSigned(t)
	be := &backend{}
	srv := startSMTP(t, be, &cert)
	const wrong = "not-the-Pa55word"
	err := send(t, srv.config(func(c *Config) { c.Password = wrong }), sampleMessage(), WithTLSConfig(&tls.Config{RootCAs: pool}))
	if err == nil || !strings.Contains(err.Error(), "AUTH PLAIN") {
		t.Fatalf("err = %v, want AUTH failure", err)
	}
	if strings.Contains(err.Error(), wrong) {
		t.Errorf("error leaks password: %v", err)
	}
	be.mu.Lock()
	defer be.mu.Unlock()
	if len(be.msgs) != 0 || len(be.authTries) != 1 {
		t.Errorf("msgs %d auth %v", len(be.msgs), be.authTries)
	}
}

func TestEmailContextDeadline(t *testing.T) {
	// A peer that accepts TCP but never greets.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			defer c.Close()
		}
	}()
	host, portS, _ := net.SplitHostPort(ln.Addr().String())
	port, _ := strconv.Atoi(portS)
	s, err := New(Config{Kind: KindEmail, SMTPHost: host, SMTPPort: port, From: "a@example.com", To: []string{"b@example.com"}})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Send(ctx, sampleMessage())
	if !errors.Is(err, context.DeadlineExceeded) || time.Since(start) > 5*time.Second {
		t.Fatalf("err = %v after %v", err, time.Since(start))
	}
}
