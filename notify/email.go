package notify

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"mime"
	"mime/quotedprintable"
	"net"
	"net/mail"
	"net/smtp"
	"strconv"
	"strings"
	"time"
)

// ErrInsecureAuth is returned when sending SMTP credentials would expose
// them in clear text: the server offered no STARTTLS and the channel is not
// an explicitly allowed loopback "none" setup.
var ErrInsecureAuth = errors.New("refusing to send SMTP credentials over an unencrypted connection")

// ErrNoStartTLS is returned when starttls is "required" and the server does
// not offer STARTTLS. Nothing, in particular no credentials, has been sent.
var ErrNoStartTLS = errors.New("server does not offer STARTTLS (starttls=required)")

type emailSender struct {
	cfg  Config
	tls  *tls.Config
	now  func() time.Time
	from *mail.Address
	to   []*mail.Address
}

func newEmailSender(c Config, o options) *emailSender {
	// Addresses were checked by Validate.
	from, _ := mail.ParseAddress(c.From)
	to := make([]*mail.Address, 0, len(c.To))
	for _, t := range c.To {
		a, _ := mail.ParseAddress(t)
		to = append(to, a)
	}
	var tc *tls.Config
	if o.tlsConfig != nil {
		tc = o.tlsConfig.Clone()
	} else {
		tc = &tls.Config{MinVersion: tls.VersionTLS12}
	}
	if tc.ServerName == "" {
		tc.ServerName = c.SMTPHost
	}
	return &emailSender{cfg: c, tls: tc, now: o.now, from: from, to: to}
}

func (s *emailSender) policy() string {
	if s.cfg.StartTLS == "" {
		return StartTLSRequired
	}
	return s.cfg.StartTLS
}

func (s *emailSender) Send(ctx context.Context, m Message) error {
	if err := s.send(ctx, m); err != nil {
		return fmt.Errorf("notify: email via %s: %w", s.addr(), err)
	}
	return nil
}

func (s *emailSender) addr() string {
	port := s.cfg.SMTPPort
	if port == 0 {
		port = DefaultSMTPPort
	}
	return net.JoinHostPort(s.cfg.SMTPHost, strconv.Itoa(port))
}

func (s *emailSender) send(ctx context.Context, m Message) (err error) {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()

	msg := s.compose(m)

	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", s.addr())
	if err != nil {
		return err
	}
	// net/smtp has no context support: bound every read and write by the
	// deadline and abort them when ctx is cancelled.
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	defer func() {
		if err == nil {
			return
		}
		// The socket deadline may fire a moment before ctx reports it.
		cerr := ctx.Err()
		if dl, ok := ctx.Deadline(); cerr == nil && ok && !time.Now().Before(dl) {
			cerr = context.DeadlineExceeded
		}
		if cerr != nil {
			err = fmt.Errorf("%w (%v)", cerr, err)
		}
	}()

	c, err := smtp.NewClient(conn, s.cfg.SMTPHost)
	if err != nil {
		conn.Close()
		return err
	}
	defer c.Close()

	if err := c.Hello("localhost"); err != nil {
		return err
	}
	hasTLS, _ := c.Extension("STARTTLS")
	switch s.policy() {
	case StartTLSRequired:
		if !hasTLS {
			return ErrNoStartTLS
		}
		if err := c.StartTLS(s.tls); err != nil {
			return fmt.Errorf("STARTTLS: %w", err)
		}
	case StartTLSOpportunistic:
		// Offered but failing is an error, not a silent downgrade.
		if hasTLS {
			if err := c.StartTLS(s.tls); err != nil {
				return fmt.Errorf("STARTTLS: %w", err)
			}
		}
	}

	if s.cfg.Username != "" {
		_, encrypted := c.TLSConnectionState()
		if !encrypted && !(s.policy() == StartTLSNone && isLoopback(s.cfg.SMTPHost)) {
			return ErrInsecureAuth
		}
		if ok, mechs := c.Extension("AUTH"); !ok || !hasMech(mechs, "PLAIN") {
			return fmt.Errorf("server does not offer AUTH PLAIN (offers %q)", mechs)
		}
		a := &plainAuth{username: s.cfg.Username, password: s.cfg.Password, allowClear: !encrypted}
		if err := c.Auth(a); err != nil {
			return fmt.Errorf("AUTH PLAIN: %w", err)
		}
	}

	if err := c.Mail(s.from.Address); err != nil {
		return fmt.Errorf("MAIL FROM: %w", err)
	}
	for _, rcpt := range s.to {
		if err := c.Rcpt(rcpt.Address); err != nil {
			return fmt.Errorf("RCPT TO <%s>: %w", rcpt.Address, err)
		}
	}
	w, err := c.Data()
	if err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if _, err := w.Write(msg); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	if err := w.Close(); err != nil {
		return fmt.Errorf("DATA: %w", err)
	}
	// The message is accepted once DATA ends; a failed QUIT does not matter.
	_ = c.Quit()
	return nil
}

func hasMech(list, mech string) bool {
	for _, m := range strings.Fields(list) {
		if strings.EqualFold(m, mech) {
			return true
		}
	}
	return false
}

// plainAuth is SASL PLAIN (RFC 4616). Unlike smtp.PlainAuth it does not
// consult the server name: the decision to send credentials without TLS is
// made by the caller (allowClear) from the channel's policy.
type plainAuth struct {
	username, password string
	allowClear         bool
}

func (a *plainAuth) Start(server *smtp.ServerInfo) (string, []byte, error) {
	if !server.TLS && !a.allowClear {
		return "", nil, ErrInsecureAuth
	}
	resp := []byte("\x00" + a.username + "\x00" + a.password)
	return "PLAIN", resp, nil
}

func (a *plainAuth) Next(_ []byte, more bool) ([]byte, error) {
	if more {
		return nil, errors.New("unexpected server challenge")
	}
	return nil, nil
}

// compose builds the RFC 5322 message with CRLF line endings.
func (s *emailSender) compose(m Message) []byte {
	var b bytes.Buffer
	h := func(k, v string) { fmt.Fprintf(&b, "%s: %s\r\n", k, v) }
	tos := make([]string, len(s.to))
	for i, a := range s.to {
		tos[i] = a.String()
	}
	h("From", s.from.String())
	h("To", strings.Join(tos, ", "))
	h("Subject", mime.QEncoding.Encode("utf-8", subject(m)))
	h("Date", s.now().Format(time.RFC1123Z))
	h("Message-ID", messageID(s.from.Address))
	h("MIME-Version", "1.0")
	h("Content-Type", "text/plain; charset=utf-8")
	h("Content-Transfer-Encoding", "quoted-printable")
	h("Auto-Submitted", "auto-generated") // RFC 3834: no auto-replies
	if m.Event != "" {
		h("X-RM-Event", oneLine(m.Event))
	}
	if m.AlertID != "" {
		h("X-RM-Alert-ID", oneLine(m.AlertID))
	}
	b.WriteString("\r\n")
	body := strings.ReplaceAll(details(m), "\r\n", "\n")
	body = strings.ReplaceAll(body, "\n", "\r\n") + "\r\n"
	qp := quotedprintable.NewWriter(&b)
	_, _ = qp.Write([]byte(body))
	_ = qp.Close()
	return b.Bytes()
}

func messageID(from string) string {
	domain := "restic-manager.invalid"
	if i := strings.LastIndexByte(from, '@'); i >= 0 && i+1 < len(from) {
		domain = from[i+1:]
	}
	var r [12]byte
	_, _ = rand.Read(r[:])
	return "<" + hex.EncodeToString(r[:]) + "." + strconv.FormatInt(time.Now().UnixNano(), 36) + "@" + domain + ">"
}
