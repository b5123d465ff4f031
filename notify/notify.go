// Package notify delivers console alert notifications to external channels:
// a generic signed JSON webhook, e-mail over SMTP, ntfy, Gotify and Slack- or
// Discord-style incoming webhooks.
//
// Every channel is a small direct client on net/http or net/smtp; the package
// has no third-party runtime dependencies. The console stores one Config per
// channel, checks it with Validate, asks Accepts (or Wants) whether a message
// is routed to it, and delivers with New(cfg).Send(ctx, msg). SendTest
// implements the "send test" action.
//
// Secrets (webhook HMAC key, Gotify app token, ntfy access token, SMTP
// password, and URLs, whose paths often carry tokens in Slack/Discord/ntfy
// setups) never appear in errors returned by this package: URLs are reduced
// to scheme://host and any secret echoed back by a server is masked.
package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/mail"
	"net/url"
	"regexp"
	"strings"
	"time"
)

// Severity orders alerts: Info < Warning < Critical.
type Severity int

// Severity levels.
const (
	Info Severity = iota
	Warning
	Critical
)

// String returns "info", "warning" or "critical".
func (s Severity) String() string {
	switch s {
	case Info:
		return "info"
	case Warning:
		return "warning"
	case Critical:
		return "critical"
	}
	return fmt.Sprintf("Severity(%d)", int(s))
}

// ParseSeverity parses "info", "warning" (or "warn") and "critical" (or
// "crit"), case-insensitively.
func ParseSeverity(s string) (Severity, error) {
	switch strings.ToLower(strings.TrimSpace(s)) {
	case "info":
		return Info, nil
	case "warning", "warn":
		return Warning, nil
	case "critical", "crit":
		return Critical, nil
	}
	return 0, fmt.Errorf("notify: unknown severity %q (want info, warning or critical)", s)
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) {
	if s < Info || s > Critical {
		return nil, fmt.Errorf("notify: invalid severity %d", int(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Severity) UnmarshalText(b []byte) error {
	v, err := ParseSeverity(string(b))
	if err != nil {
		return err
	}
	*s = v
	return nil
}

// Event values for Message.Event.
const (
	EventFiring   = "firing"
	EventResolved = "resolved"
	EventTest     = "test"
)

// Message is one alert notification.
type Message struct {
	Event    string // "firing", "resolved" or "test"
	AlertID  string
	Rule     string // e.g. "job_failed", "backup_stale"
	HostID   string
	HostName string
	Severity Severity
	Title    string
	Text     string
	Since    time.Time
	URL      string // link to the console page, may be empty
}

// Channel kinds for Config.Kind.
const (
	KindWebhook = "webhook"
	KindEmail   = "email"
	KindNtfy    = "ntfy"
	KindGotify  = "gotify"
	KindSlack   = "slack"
	KindDiscord = "discord"
)

// STARTTLS policies for Config.StartTLS.
const (
	StartTLSRequired      = "required"
	StartTLSOpportunistic = "opportunistic"
	StartTLSNone          = "none"
)

// DefaultMinSeverity is used when Config.MinSeverity is empty.
const DefaultMinSeverity = Warning

// DefaultSMTPPort is used when Config.SMTPPort is 0 (submission, STARTTLS).
const DefaultSMTPPort = 587

// DefaultTimeout bounds one Send when the caller's context has no deadline.
const DefaultTimeout = 30 * time.Second

// Config describes one notification channel.
type Config struct {
	Kind   string `json:"kind"` // webhook, email, ntfy, gotify, slack, discord
	URL    string `json:"url,omitempty"`
	Secret string `json:"secret,omitempty"` // webhook HMAC key; gotify app token; ntfy access token

	// email
	SMTPHost string   `json:"smtp_host,omitempty"`
	SMTPPort int      `json:"smtp_port,omitempty"` // default 587
	Username string   `json:"username,omitempty"`
	Password string   `json:"password,omitempty"`
	From     string   `json:"from,omitempty"`
	To       []string `json:"to,omitempty"`
	StartTLS string   `json:"starttls,omitempty"` // "required" (default), "opportunistic", "none"

	Topic       string `json:"topic,omitempty"`        // ntfy topic if not in URL
	MinSeverity string `json:"min_severity,omitempty"` // default "warning"
}

var ntfyTopicRE = regexp.MustCompile(`^[-_A-Za-z0-9]{1,64}$`)

// Validate reports every problem with c, joined into one error, or nil.
// Messages never contain secrets or full URLs.
func (c Config) Validate() error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }

	if c.MinSeverity != "" {
		if _, err := ParseSeverity(c.MinSeverity); err != nil {
			add("min_severity: %q is not one of info, warning, critical", c.MinSeverity)
		}
	}

	switch c.Kind {
	case "":
		add("kind is required (webhook, email, ntfy, gotify, slack or discord)")
	case KindWebhook, KindSlack, KindDiscord:
		errs = append(errs, validateHTTPURL(c.URL)...)
	case KindNtfy:
		uerrs := validateHTTPURL(c.URL)
		errs = append(errs, uerrs...)
		if c.Topic != "" && !ntfyTopicRE.MatchString(c.Topic) {
			add("topic: must be 1-64 characters of letters, digits, '-' or '_'")
		}
		if len(uerrs) == 0 && c.Topic == "" {
			if u, _ := url.Parse(c.URL); strings.Trim(u.Path, "/") == "" {
				add("ntfy needs a topic: put it in the url path (https://ntfy.example/alerts) or set topic")
			}
		}
	case KindGotify:
		errs = append(errs, validateHTTPURL(c.URL)...)
		if c.Secret == "" {
			add("secret: gotify needs an application token")
		}
	case KindEmail:
		errs = append(errs, c.validateEmail()...)
	default:
		add("kind: unknown channel kind %q (want webhook, email, ntfy, gotify, slack or discord)", c.Kind)
	}
	return errors.Join(errs...)
}

func validateHTTPURL(raw string) []error {
	if strings.TrimSpace(raw) == "" {
		return []error{errors.New("url is required")}
	}
	u, err := url.Parse(raw)
	if err != nil {
		// Do not wrap err: it quotes the URL, which may carry a token.
		return []error{errors.New("url is not a valid URL")}
	}
	switch u.Scheme {
	case "http", "https":
	default:
		return []error{fmt.Errorf("url: scheme must be http or https, not %q", u.Scheme)}
	}
	if u.Host == "" {
		return []error{errors.New("url: missing host")}
	}
	return nil
}

func (c Config) validateEmail() []error {
	var errs []error
	add := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.SMTPHost == "" {
		add("smtp_host is required for email")
	} else if strings.ContainsAny(c.SMTPHost, " \t\r\n/:") && net.ParseIP(c.SMTPHost) == nil {
		add("smtp_host: must be a host name or IP address without port")
	}
	if c.SMTPPort < 0 || c.SMTPPort > 65535 {
		add("smtp_port: %d is out of range", c.SMTPPort)
	}
	if c.From == "" {
		add("from is required for email")
	} else if _, err := mail.ParseAddress(c.From); err != nil {
		add("from: %q is not a valid address", c.From)
	}
	if len(c.To) == 0 {
		add("to: email needs at least one recipient")
	}
	for _, t := range c.To {
		if _, err := mail.ParseAddress(t); err != nil {
			add("to: %q is not a valid address", t)
		}
	}
	switch c.StartTLS {
	case "", StartTLSRequired, StartTLSOpportunistic, StartTLSNone:
	default:
		add("starttls: %q is not one of required, opportunistic, none", c.StartTLS)
	}
	if c.Password != "" && c.Username == "" {
		add("username is required when a password is set")
	}
	if c.Username != "" && c.Password == "" {
		add("password is required when a username is set")
	}
	if c.StartTLS == StartTLSNone && c.Username != "" && c.SMTPHost != "" && !isLoopback(c.SMTPHost) {
		add("starttls: \"none\" would send the SMTP password in clear text; only allowed for a loopback smtp_host")
	}
	return errs
}

func isLoopback(host string) bool {
	if strings.EqualFold(host, "localhost") {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// minSeverity returns the channel's threshold. An unparsable value (which
// Validate rejects) yields Info so that a broken setting never silences
// alerts.
func (c Config) minSeverity() Severity {
	if c.MinSeverity == "" {
		return DefaultMinSeverity
	}
	s, err := ParseSeverity(c.MinSeverity)
	if err != nil {
		return Info
	}
	return s
}

// Wants reports whether a channel routes alerts of severity s: s must be at
// least c.MinSeverity (default "warning").
//
// Test events are not filtered by severity: the console's "send test" action
// must always reach the channel. Use Accepts, which applies that rule to a
// whole Message, or call Send directly for tests (SendTest does).
func Wants(c Config, s Severity) bool {
	return s >= c.minSeverity()
}

// Accepts reports whether m should be delivered to channel c: test events
// always pass, other events pass when Wants(c, m.Severity).
func Accepts(c Config, m Message) bool {
	if m.Event == EventTest {
		return true
	}
	return Wants(c, m.Severity)
}

// Sender delivers a message to one channel.
type Sender interface {
	Send(ctx context.Context, m Message) error
}

// Option customises New.
type Option func(*options)

type options struct {
	httpClient *http.Client
	tlsConfig  *tls.Config
	now        func() time.Time
}

// WithHTTPClient sets the HTTP client used by the HTTP channels (default: a
// client with the default transport). Redirects are never followed, whatever
// the client's CheckRedirect: a 3xx answer is reported as an error, so
// tokens in headers cannot be forwarded to another host.
func WithHTTPClient(c *http.Client) Option {
	return func(o *options) { o.httpClient = c }
}

// WithTLSConfig sets the TLS configuration for SMTP STARTTLS (for example a
// RootCAs pool trusting a private or test CA). ServerName defaults to the
// SMTP host.
func WithTLSConfig(c *tls.Config) Option {
	return func(o *options) { o.tlsConfig = c }
}

// withClock overrides time.Now (tests).
func withClock(now func() time.Time) Option {
	return func(o *options) { o.now = now }
}

// New validates c and returns a Sender for its kind.
func New(c Config, opts ...Option) (Sender, error) {
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("notify: invalid %s channel: %w", kindName(c.Kind), err)
	}
	o := options{now: time.Now}
	for _, opt := range opts {
		opt(&o)
	}
	if c.Kind == KindEmail {
		return newEmailSender(c, o), nil
	}
	return newHTTPSender(c, o), nil
}

func kindName(k string) string {
	if k == "" {
		return "notification"
	}
	return fmt.Sprintf("%q", k)
}

// TestMessage returns the message sent by the console's "send test" action.
// consoleURL may be empty.
func TestMessage(now time.Time, consoleURL string) Message {
	return Message{
		Event:    EventTest,
		AlertID:  "test",
		Rule:     "test",
		Severity: Info,
		Title:    "Test notification from restic-manager",
		Text:     "This is a test notification. If you can read it, the channel is configured correctly.",
		Since:    now,
		URL:      consoleURL,
	}
}

// SendTest validates c and sends TestMessage through it, bypassing severity
// routing. It is the console's "send test" action.
func SendTest(ctx context.Context, c Config, consoleURL string, opts ...Option) error {
	s, err := New(c, opts...)
	if err != nil {
		return err
	}
	return s.Send(ctx, TestMessage(time.Now(), consoleURL))
}

// withDefaultTimeout applies DefaultTimeout when ctx has no deadline.
func withDefaultTimeout(ctx context.Context) (context.Context, context.CancelFunc) {
	if _, ok := ctx.Deadline(); ok {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, DefaultTimeout)
}

// eventLabel is the upper-case event shown in subjects and chat messages.
func eventLabel(m Message) string {
	if m.Event == "" {
		return "ALERT"
	}
	return strings.ToUpper(oneLine(m.Event))
}

// title returns m.Title, or a generated one.
func title(m Message) string {
	if t := strings.TrimSpace(m.Title); t != "" {
		return oneLine(t)
	}
	t := m.Rule
	if t == "" {
		t = "alert"
	}
	if h := hostLabel(m); h != "" {
		t += " on " + h
	}
	return oneLine(t)
}

// subject is the one-line summary: "[FIRING critical] Backup failed on web1".
func subject(m Message) string {
	return truncate(fmt.Sprintf("[%s %s] %s", eventLabel(m), m.Severity, title(m)), maxSubjectLen)
}

// maxSubjectLen keeps subjects well inside header line limits.
const maxSubjectLen = 250

func hostLabel(m Message) string {
	switch {
	case m.HostName != "" && m.HostID != "" && m.HostName != m.HostID:
		return m.HostName + " (" + m.HostID + ")"
	case m.HostName != "":
		return m.HostName
	}
	return m.HostID
}

// details is the plain-text body shared by e-mail and ntfy/gotify/chat.
func details(m Message) string {
	var b strings.Builder
	if t := strings.TrimSpace(m.Text); t != "" {
		b.WriteString(t)
		b.WriteString("\n\n")
	}
	line := func(k, v string) {
		if v != "" {
			fmt.Fprintf(&b, "%-9s %s\n", k+":", v)
		}
	}
	line("Event", m.Event)
	line("Severity", m.Severity.String())
	line("Rule", m.Rule)
	line("Host", hostLabel(m))
	if !m.Since.IsZero() {
		line("Since", m.Since.UTC().Format(time.RFC3339))
	}
	line("Alert", m.AlertID)
	line("Console", m.URL)
	return strings.TrimRight(b.String(), "\n")
}

// oneLine collapses CR/LF and tabs so a value is safe in a header line.
func oneLine(s string) string {
	return strings.Join(strings.Fields(s), " ")
}
