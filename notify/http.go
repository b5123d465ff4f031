package notify

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"
)

// Webhook headers.
const (
	// SignatureHeader carries "sha256=<hex HMAC-SHA256 of the body>", keyed
	// with Config.Secret. It is omitted when the channel has no secret.
	SignatureHeader = "X-RM-Signature"
	// TimestampHeader carries the send time in Unix seconds; the same
	// instant is in the signed body as "sent_at", so receivers can reject
	// stale or replayed deliveries.
	TimestampHeader = "X-RM-Timestamp"
	// EventHeader carries Message.Event.
	EventHeader = "X-RM-Event"
)

const (
	userAgent      = "restic-manager-notify/1"
	maxErrBody     = 512
	discordMaxLen  = 2000 // Discord rejects longer content
	ntfyMaxBodyLen = 4000 // ntfy turns longer bodies into attachments
)

// WebhookPayload is the JSON body POSTed by the generic webhook channel.
type WebhookPayload struct {
	Event    string     `json:"event"`
	AlertID  string     `json:"alert_id"`
	Rule     string     `json:"rule"`
	HostID   string     `json:"host_id"`
	HostName string     `json:"host_name"`
	Severity string     `json:"severity"`
	Title    string     `json:"title"`
	Text     string     `json:"text"`
	Since    *time.Time `json:"since"` // null when unknown
	URL      string     `json:"url"`
	SentAt   time.Time  `json:"sent_at"`
}

// Sign returns the X-RM-Signature value for body: "sha256=" followed by the
// hex HMAC-SHA256 of body keyed with secret.
func Sign(secret string, body []byte) string {
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return "sha256=" + hex.EncodeToString(mac.Sum(nil))
}

// VerifySignature reports whether header (an X-RM-Signature value) is the
// HMAC-SHA256 of exactly body under secret. The comparison is constant-time.
// An empty secret never verifies.
func VerifySignature(secret string, body []byte, header string) bool {
	if secret == "" {
		return false
	}
	hexSig, ok := strings.CutPrefix(strings.TrimSpace(header), "sha256=")
	if !ok {
		return false
	}
	got, err := hex.DecodeString(hexSig)
	if err != nil || len(got) != sha256.Size {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write(body)
	return hmac.Equal(got, mac.Sum(nil))
}

// HTTPError is returned when a channel's server answers with a non-2xx
// status. Body is a short excerpt of the answer with secrets masked.
type HTTPError struct {
	Kind       string
	Endpoint   string // scheme://host only
	StatusCode int
	Status     string
	Body       string
}

func (e *HTTPError) Error() string {
	s := fmt.Sprintf("notify: %s: POST %s: unexpected status %s", e.Kind, e.Endpoint, e.Status)
	if e.Body != "" {
		s += ": " + e.Body
	}
	return s
}

type httpSender struct {
	cfg    Config
	client *http.Client
	now    func() time.Time
}

func newHTTPSender(c Config, o options) *httpSender {
	base := o.httpClient
	if base == nil {
		base = &http.Client{}
	}
	cl := *base
	cl.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return &httpSender{cfg: c, client: &cl, now: o.now}
}

func (s *httpSender) Send(ctx context.Context, m Message) error {
	ctx, cancel := withDefaultTimeout(ctx)
	defer cancel()
	req, err := s.request(ctx, m)
	if err != nil {
		return err
	}
	req.Header.Set("User-Agent", userAgent)
	resp, err := s.client.Do(req)
	if err != nil {
		// *url.Error quotes the full URL, which may carry a token: keep
		// only the underlying cause.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return fmt.Errorf("notify: %s: POST %s: %w", s.cfg.Kind, redactURL(req.URL), err)
	}
	defer resp.Body.Close()
	excerpt, _ := io.ReadAll(io.LimitReader(resp.Body, maxErrBody))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, 1<<20)) // allow connection reuse
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return &HTTPError{
			Kind:       s.cfg.Kind,
			Endpoint:   redactURL(req.URL),
			StatusCode: resp.StatusCode,
			Status:     resp.Status,
			Body:       s.mask(oneLine(strings.ToValidUTF8(string(excerpt), "?"))),
		}
	}
	return nil
}

// mask hides secrets a server might echo back in an error body.
func (s *httpSender) mask(text string) string {
	for _, secret := range []string{s.cfg.Secret, s.cfg.URL} {
		if len(secret) >= 4 {
			text = strings.ReplaceAll(text, secret, "[REDACTED]")
		}
	}
	if u, err := url.Parse(s.cfg.URL); err == nil && len(u.Path) > 1 {
		text = strings.ReplaceAll(text, u.Path, "/[REDACTED]")
	}
	return text
}

func (s *httpSender) request(ctx context.Context, m Message) (*http.Request, error) {
	u, err := url.Parse(s.cfg.URL)
	if err != nil { // unreachable after Validate; never quote the URL
		return nil, fmt.Errorf("notify: %s: url is not a valid URL", s.cfg.Kind)
	}
	switch s.cfg.Kind {
	case KindWebhook:
		return s.webhook(ctx, u, m)
	case KindSlack:
		return jsonRequest(ctx, u, map[string]string{"text": "*" + slackEscape(subject(m)) + "*\n" + slackEscape(details(m))})
	case KindDiscord:
		return jsonRequest(ctx, u, discordPayload{
			Content:         truncate("**"+subject(m)+"**\n"+details(m), discordMaxLen),
			AllowedMentions: allowedMentions{Parse: []string{}},
		})
	case KindNtfy:
		return s.ntfy(ctx, u, m)
	case KindGotify:
		return s.gotify(ctx, u, m)
	}
	return nil, fmt.Errorf("notify: unknown channel kind %q", s.cfg.Kind)
}

func (s *httpSender) webhook(ctx context.Context, u *url.URL, m Message) (*http.Request, error) {
	sent := s.now().UTC()
	p := WebhookPayload{
		Event:    m.Event,
		AlertID:  m.AlertID,
		Rule:     m.Rule,
		HostID:   m.HostID,
		HostName: m.HostName,
		Severity: m.Severity.String(),
		Title:    m.Title,
		Text:     m.Text,
		URL:      m.URL,
		SentAt:   sent,
	}
	if !m.Since.IsZero() {
		since := m.Since.UTC()
		p.Since = &since
	}
	body, err := json.Marshal(p)
	if err != nil {
		return nil, fmt.Errorf("notify: encoding payload: %w", err)
	}
	req, err := postRequest(ctx, u, "application/json", body)
	if err != nil {
		return nil, err
	}
	req.Header.Set(TimestampHeader, strconv.FormatInt(sent.Unix(), 10))
	req.Header.Set(EventHeader, oneLine(m.Event))
	if s.cfg.Secret != "" {
		// Signed bytes are exactly the bytes sent.
		req.Header.Set(SignatureHeader, Sign(s.cfg.Secret, body))
	}
	return req, nil
}

type discordPayload struct {
	Content         string          `json:"content"`
	AllowedMentions allowedMentions `json:"allowed_mentions"`
}

// allowedMentions with an empty Parse list stops alert text from pinging
// @everyone, roles or users.
type allowedMentions struct {
	Parse []string `json:"parse"`
}

// ntfyPriority maps severities to ntfy priorities (3 default, 4 high, 5 max).
func ntfyPriority(s Severity) string {
	switch {
	case s >= Critical:
		return "5"
	case s == Warning:
		return "4"
	}
	return "3"
}

// ntfyTags returns emoji short codes and the rule name.
func ntfyTags(m Message) string {
	var tag string
	switch {
	case m.Event == EventResolved:
		tag = "white_check_mark"
	case m.Event == EventTest:
		tag = "test_tube"
	case m.Severity >= Critical:
		tag = "rotating_light"
	case m.Severity == Warning:
		tag = "warning"
	default:
		tag = "information_source"
	}
	tags := []string{tag}
	if r := strings.NewReplacer(",", "_", " ", "_").Replace(oneLine(m.Rule)); r != "" {
		tags = append(tags, r)
	}
	return strings.Join(tags, ",")
}

func (s *httpSender) ntfy(ctx context.Context, u *url.URL, m Message) (*http.Request, error) {
	target := *u
	if s.cfg.Topic != "" {
		target.Path = strings.TrimRight(target.Path, "/") + "/" + s.cfg.Topic
		target.RawPath = ""
	}
	body := truncate(details(m), ntfyMaxBodyLen)
	req, err := postRequest(ctx, &target, "text/plain; charset=utf-8", []byte(body))
	if err != nil {
		return nil, err
	}
	// ntfy decodes RFC 2047 encoded words for non-ASCII header values.
	req.Header.Set("Title", mime.QEncoding.Encode("utf-8", subject(m)))
	req.Header.Set("Priority", ntfyPriority(m.Severity))
	req.Header.Set("Tags", ntfyTags(m))
	if m.URL != "" {
		req.Header.Set("Click", oneLine(m.URL))
	}
	if s.cfg.Secret != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.Secret)
	}
	return req, nil
}

// GotifyPayload is the JSON body POSTed to Gotify's /message endpoint.
type GotifyPayload struct {
	Title    string         `json:"title"`
	Message  string         `json:"message"`
	Priority int            `json:"priority"`
	Extras   map[string]any `json:"extras,omitempty"`
}

// gotifyPriority maps severities to Gotify priorities (0-10; Android shows
// >= 4 as a notification and >= 8 as a high-priority one).
func gotifyPriority(s Severity) int {
	switch {
	case s >= Critical:
		return 8
	case s == Warning:
		return 5
	}
	return 2
}

func (s *httpSender) gotify(ctx context.Context, u *url.URL, m Message) (*http.Request, error) {
	target := *u
	target.Path = strings.TrimRight(target.Path, "/") + "/message"
	target.RawPath = ""
	p := GotifyPayload{Title: subject(m), Message: details(m), Priority: gotifyPriority(m.Severity)}
	if m.URL != "" {
		p.Extras = map[string]any{"client::notification": map[string]any{"click": map[string]string{"url": m.URL}}}
	}
	req, err := jsonRequest(ctx, &target, p)
	if err != nil {
		return nil, err
	}
	// The token goes in a header, not the query, so it stays out of
	// proxy and server access logs.
	req.Header.Set("X-Gotify-Key", s.cfg.Secret)
	return req, nil
}

func jsonRequest(ctx context.Context, u *url.URL, v any) (*http.Request, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("notify: encoding payload: %w", err)
	}
	return postRequest(ctx, u, "application/json", b)
}

func postRequest(ctx context.Context, u *url.URL, contentType string, body []byte) (*http.Request, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		// Not wrapped: the error would quote the URL.
		return nil, errors.New("notify: building request: invalid url")
	}
	req.Header.Set("Content-Type", contentType)
	return req, nil
}

// redactURL reduces u to scheme://host: userinfo, path (Slack/Discord
// webhook tokens, ntfy topics) and query (tokens) are dropped.
func redactURL(u *url.URL) string {
	if u == nil {
		return "(no url)"
	}
	s := u.Scheme + "://" + u.Host
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		s += "/…"
	}
	return s
}

// slackEscape escapes the three characters Slack's mrkdwn treats as control
// characters.
func slackEscape(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

// truncate shortens s to at most n bytes on a rune boundary, marking the cut.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := n - len(mark)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}
