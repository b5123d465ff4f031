package notify

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type captured struct {
	Method string
	Path   string
	Query  string
	Header http.Header
	Body   []byte
}

// recorder is an httptest server that keeps every request it receives and
// answers with status and reply.
type recorder struct {
	*httptest.Server
	mu     sync.Mutex
	reqs   []captured
	status int
	reply  string
}

func newRecorder(t *testing.T, status int, reply string) *recorder {
	t.Helper()
	r := &recorder{status: status, reply: reply}
	r.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		body, _ := io.ReadAll(req.Body)
		r.mu.Lock()
		r.reqs = append(r.reqs, captured{req.Method, req.URL.Path, req.URL.RawQuery, req.Header.Clone(), body})
		r.mu.Unlock()
		w.WriteHeader(r.status)
		_, _ = io.WriteString(w, r.reply)
	}))
	t.Cleanup(r.Close)
	return r
}

func (r *recorder) only(t *testing.T) captured {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.reqs) != 1 {
		t.Fatalf("server got %d requests, want 1", len(r.reqs))
	}
	return r.reqs[0]
}

var (
	testNow   = time.Date(2026, 11, 27, 14, 30, 0, 0, time.UTC)
	testSince = time.Date(2026, 11, 27, 12, 0, 0, 0, time.FixedZone("CET", 3600))
)

func sampleMessage() Message {
	return Message{
		Event:    EventFiring,
		AlertID:  "01JALERT",
		Rule:     "job_failed",
		HostID:   "h-1",
		HostName: "web1",
		Severity: Critical,
		Title:    "Backup failed on web1",
		Text:     "restic exited with status 1 <lock held> & retry failed",
		Since:    testSince,
		URL:      "https://console.example.com/hosts/h-1?tab=alerts",
	}
}

const sampleDetails = "restic exited with status 1 <lock held> & retry failed\n\n" +
	"Event:    firing\n" +
	"Severity: critical\n" +
	"Rule:     job_failed\n" +
	"Host:     web1 (h-1)\n" +
	"Since:    2026-11-27T11:00:00Z\n" +
	"Alert:    01JALERT\n" +
	"Console:  https://console.example.com/hosts/h-1?tab=alerts"

func send(t *testing.T, c Config, m Message, opts ...Option) error {
	t.Helper()
	s, err := New(c, append([]Option{withClock(func() time.Time { return testNow })}, opts...)...)
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.Send(ctx, m)
}

func TestWebhookSignedBody(t *testing.T) {
	srv := newRecorder(t, http.StatusOK, "")
	const secret = "hmac-key-123"
	if err := send(t, Config{Kind: KindWebhook, URL: srv.URL + "/hooks/rm", Secret: secret}, sampleMessage()); err != nil {
		t.Fatalf("Send: %v", err)
	}
	got := srv.only(t)
	if got.Method != http.MethodPost || got.Path != "/hooks/rm" {
		t.Fatalf("got %s %s", got.Method, got.Path)
	}
	wantBody := `{"event":"firing","alert_id":"01JALERT","rule":"job_failed","host_id":"h-1","host_name":"web1",` +
		`"severity":"critical","title":"Backup failed on web1",` +
		`"text":"restic exited with status 1 \u003clock held\u003e \u0026 retry failed",` +
		`"since":"2026-11-27T11:00:00Z","url":"https://console.example.com/hosts/h-1?tab=alerts",` +
		`"sent_at":"2026-11-27T14:30:00Z"}`
	if string(got.Body) != wantBody {
		t.Errorf("body\n got %s\nwant %s", got.Body, wantBody)
	}
	if ct := got.Header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("Content-Type = %q", ct)
	}
	if ts := got.Header.Get(TimestampHeader); ts != "1795789800" {
		t.Errorf("%s = %q", TimestampHeader, ts)
	}
	if ev := got.Header.Get(EventHeader); ev != "firing" {
		t.Errorf("%s = %q", EventHeader, ev)
	}
	sig := got.Header.Get(SignatureHeader)
	if !strings.HasPrefix(sig, "sha256=") || len(sig) != len("sha256=")+64 {
		t.Fatalf("signature header = %q", sig)
	}
	if !VerifySignature(secret, got.Body, sig) {
		t.Error("VerifySignature rejects the delivered body")
	}
	if VerifySignature("wrong-key", got.Body, sig) {
		t.Error("VerifySignature accepts a wrong secret")
	}
	tampered := append([]byte(nil), got.Body...)
	tampered[len(tampered)-3] ^= 1
	if VerifySignature(secret, tampered, sig) {
		t.Error("VerifySignature accepts a modified body")
	}
	for _, bad := range []string{"", "sha256=", "sha1=" + sig[7:], sig[7:], "sha256=zz", sig[:len(sig)-2]} {
		if VerifySignature(secret, got.Body, bad) {
			t.Errorf("VerifySignature accepts header %q", bad)
		}
	}
	if VerifySignature("", got.Body, Sign("", got.Body)) {
		t.Error("empty secret verified")
	}
	// The body decodes into the exported payload type.
	var p WebhookPayload
	if err := json.Unmarshal(got.Body, &p); err != nil || p.Since == nil || !p.Since.Equal(testSince) || p.Severity != "critical" {
		t.Errorf("payload decode: %+v %v", p, err)
	}
}

func TestWebhookWithoutSecretIsUnsignedAndNullSince(t *testing.T) {
	srv := newRecorder(t, http.StatusNoContent, "")
	m := Message{Event: EventResolved, Rule: "backup_stale", Severity: Warning}
	if err := send(t, Config{Kind: KindWebhook, URL: srv.URL}, m); err != nil {
		t.Fatal(err)
	}
	got := srv.only(t)
	if len(got.Header.Values(SignatureHeader)) != 0 {
		t.Error("unsigned webhook has a signature header")
	}
	if !strings.Contains(string(got.Body), `"since":null`) || !strings.Contains(string(got.Body), `"event":"resolved"`) {
		t.Errorf("body %s", got.Body)
	}
}

func TestSlack(t *testing.T) {
	srv := newRecorder(t, http.StatusOK, "ok")
	if err := send(t, Config{Kind: KindSlack, URL: srv.URL + "/services/T0/B0/tok"}, sampleMessage()); err != nil {
		t.Fatal(err)
	}
	got := srv.only(t)
	var body map[string]string
	if err := json.Unmarshal(got.Body, &body); err != nil || len(body) != 1 {
		t.Fatalf("body %s: %v", got.Body, err)
	}
	want := "*[FIRING critical] Backup failed on web1*\n" + strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(sampleDetails)
	if body["text"] != want {
		t.Errorf("text\n got %q\nwant %q", body["text"], want)
	}
	if got.Path != "/services/T0/B0/tok" || got.Header.Get("Content-Type") != "application/json" {
		t.Errorf("path %q headers %v", got.Path, got.Header)
	}
}

func TestDiscord(t *testing.T) {
	srv := newRecorder(t, http.StatusNoContent, "")
	if err := send(t, Config{Kind: KindDiscord, URL: srv.URL + "/api/webhooks/1/tok"}, sampleMessage()); err != nil {
		t.Fatal(err)
	}
	got := srv.only(t)
	var body struct {
		Content         string `json:"content"`
		AllowedMentions struct {
			Parse []string `json:"parse"`
		} `json:"allowed_mentions"`
	}
	if err := json.Unmarshal(got.Body, &body); err != nil {
		t.Fatal(err)
	}
	if want := "**[FIRING critical] Backup failed on web1**\n" + sampleDetails; body.Content != want {
		t.Errorf("content\n got %q\nwant %q", body.Content, want)
	}
	if body.AllowedMentions.Parse == nil || len(body.AllowedMentions.Parse) != 0 ||
		!strings.Contains(string(got.Body), `"allowed_mentions":{"parse":[]}`) {
		t.Errorf("mentions not disabled: %s", got.Body)
	}

	// Over-long content is cut to Discord's limit.
	long := sampleMessage()
	long.Text = strings.Repeat("x", 5000)
	if err := send(t, Config{Kind: KindDiscord, URL: srv.URL}, long); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	last := srv.reqs[len(srv.reqs)-1]
	srv.mu.Unlock()
	if err := json.Unmarshal(last.Body, &body); err != nil || len(body.Content) > 2000 || !strings.HasSuffix(body.Content, "…") {
		t.Errorf("long content len %d, err %v", len(body.Content), err)
	}
}

func TestNtfy(t *testing.T) {
	cases := []struct {
		name     string
		cfg      func(base string) Config
		m        Message
		path     string
		priority string
		tags     string
		auth     string
	}{
		{"topic in url, token", func(b string) Config { return Config{Kind: KindNtfy, URL: b + "/rm-alerts", Secret: "tk_abc"} },
			sampleMessage(), "/rm-alerts", "5", "rotating_light,job_failed", "Bearer tk_abc"},
		{"topic field, warning", func(b string) Config { return Config{Kind: KindNtfy, URL: b + "/", Topic: "ops"} },
			Message{Event: EventFiring, Rule: "backup_stale", Severity: Warning, Title: "Stale"}, "/ops", "4", "warning,backup_stale", ""},
		{"info", func(b string) Config { return Config{Kind: KindNtfy, URL: b, Topic: "ops"} },
			Message{Event: EventFiring, Severity: Info, Title: "FYI"}, "/ops", "3", "information_source", ""},
		{"resolved", func(b string) Config { return Config{Kind: KindNtfy, URL: b + "/x/y"} },
			Message{Event: EventResolved, Rule: "job failed,x", Severity: Critical, Title: "ok"}, "/x/y", "5", "white_check_mark,job_failed_x", ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			srv := newRecorder(t, http.StatusOK, `{"id":"x"}`)
			if err := send(t, c.cfg(srv.URL), c.m); err != nil {
				t.Fatal(err)
			}
			got := srv.only(t)
			if got.Method != http.MethodPost || got.Path != c.path {
				t.Errorf("got %s %s, want POST %s", got.Method, got.Path, c.path)
			}
			h := got.Header
			if h.Get("Title") != subject(c.m) || h.Get("Priority") != c.priority || h.Get("Tags") != c.tags || h.Get("Authorization") != c.auth {
				t.Errorf("headers Title=%q Priority=%q Tags=%q Authorization=%q", h.Get("Title"), h.Get("Priority"), h.Get("Tags"), h.Get("Authorization"))
			}
			if h.Get("Click") != c.m.URL {
				t.Errorf("Click = %q", h.Get("Click"))
			}
			if string(got.Body) != details(c.m) {
				t.Errorf("body %q", got.Body)
			}
		})
	}
	t.Run("sample body", func(t *testing.T) {
		if details(sampleMessage()) != sampleDetails {
			t.Errorf("details\n got %q\nwant %q", details(sampleMessage()), sampleDetails)
		}
	})
	t.Run("non-ascii title encoded", func(t *testing.T) {
		srv := newRecorder(t, http.StatusOK, "")
		m := Message{Event: EventFiring, Severity: Critical, Title: "Sauvegarde échouée"}
		if err := send(t, Config{Kind: KindNtfy, URL: srv.URL + "/t"}, m); err != nil {
			t.Fatal(err)
		}
		if got := srv.only(t).Header.Get("Title"); got != "=?utf-8?q?[FIRING_critical]_Sauvegarde_=C3=A9chou=C3=A9e?=" {
			t.Errorf("Title = %q", got)
		}
	})
}

func TestGotify(t *testing.T) {
	srv := newRecorder(t, http.StatusOK, `{"id":1}`)
	const token = "AqNGOeRyu7dCpwB"
	if err := send(t, Config{Kind: KindGotify, URL: srv.URL + "/gotify/", Secret: token}, sampleMessage()); err != nil {
		t.Fatal(err)
	}
	got := srv.only(t)
	if got.Path != "/gotify/message" || got.Query != "" {
		t.Errorf("path %q query %q", got.Path, got.Query)
	}
	if got.Header.Get("X-Gotify-Key") != token {
		t.Errorf("X-Gotify-Key = %q", got.Header.Get("X-Gotify-Key"))
	}
	want, _ := json.Marshal(map[string]any{
		"title":    "[FIRING critical] Backup failed on web1",
		"message":  sampleDetails,
		"priority": 8,
		"extras":   map[string]any{"client::notification": map[string]any{"click": map[string]string{"url": "https://console.example.com/hosts/h-1?tab=alerts"}}},
	})
	var gotV, wantV any
	_ = json.Unmarshal(got.Body, &gotV)
	_ = json.Unmarshal(want, &wantV)
	gb, _ := json.Marshal(gotV)
	wb, _ := json.Marshal(wantV)
	if string(gb) != string(wb) {
		t.Errorf("body\n got %s\nwant %s", gb, wb)
	}
	for sev, p := range map[Severity]int{Info: 2, Warning: 5, Critical: 8} {
		if gotifyPriority(sev) != p {
			t.Errorf("gotifyPriority(%v) = %d", sev, gotifyPriority(sev))
		}
	}
}

func TestHTTPErrorsRedactSecrets(t *testing.T) {
	const secret = "SuperSecretTok"
	// The server echoes the request, as some misbehaving proxies do.
	echo := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusUnauthorized)
		_, _ = io.WriteString(w, "bad token "+r.Header.Get("X-Gotify-Key")+" for "+r.URL.Path+"\nline2")
	}))
	defer echo.Close()

	cfgs := []Config{
		{Kind: KindGotify, URL: echo.URL, Secret: secret},
		{Kind: KindSlack, URL: echo.URL + "/services/T/B/" + secret},
		{Kind: KindNtfy, URL: echo.URL + "/" + secret},
	}
	for _, c := range cfgs {
		err := send(t, c, sampleMessage())
		var he *HTTPError
		if !errors.As(err, &he) || he.StatusCode != http.StatusUnauthorized {
			t.Fatalf("%s: err = %v, want *HTTPError 401", c.Kind, err)
		}
		if strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "\n") {
			t.Errorf("%s: error leaks secret or breaks lines: %q", c.Kind, err)
		}
		if !strings.Contains(err.Error(), "401") || !strings.Contains(err.Error(), "[REDACTED]") {
			t.Errorf("%s: error %q lacks status or redaction", c.Kind, err)
		}
	}

	// Transport errors do not quote the URL (with userinfo and path token).
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()
	u := strings.Replace(deadURL, "http://", "http://user:"+secret+"@", 1) + "/hook/" + secret + "?token=" + secret
	err := send(t, Config{Kind: KindWebhook, URL: u, Secret: secret}, sampleMessage())
	if err == nil || strings.Contains(err.Error(), secret) || strings.Contains(err.Error(), "user") {
		t.Errorf("transport error leaks: %v", err)
	}
	if !strings.Contains(err.Error(), strings.TrimPrefix(deadURL, "http://")) {
		t.Errorf("transport error lacks host: %v", err)
	}
}

func TestHTTPTimeoutViaContext(t *testing.T) {
	release := make(chan struct{})
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	defer close(release)
	s, err := New(Config{Kind: KindWebhook, URL: slow.URL})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	start := time.Now()
	err = s.Send(ctx, sampleMessage())
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err = %v, want deadline exceeded", err)
	}
	if time.Since(start) > 5*time.Second {
		t.Fatal("Send ignored the context deadline")
	}
}

func TestHTTPRedirectNotFollowed(t *testing.T) {
	target := newRecorder(t, http.StatusOK, "")
	redirector := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, target.URL+"/stolen", http.StatusTemporaryRedirect)
	}))
	defer redirector.Close()
	err := send(t, Config{Kind: KindGotify, URL: redirector.URL, Secret: "tok"}, sampleMessage(),
		WithHTTPClient(&http.Client{Timeout: 5 * time.Second}))
	var he *HTTPError
	if !errors.As(err, &he) || he.StatusCode != http.StatusTemporaryRedirect {
		t.Fatalf("err = %v, want 307 HTTPError", err)
	}
	target.mu.Lock()
	n := len(target.reqs)
	target.mu.Unlock()
	if n != 0 {
		t.Fatalf("redirect was followed: target got %d requests", n)
	}
}

func TestSendTestBypassesRouting(t *testing.T) {
	srv := newRecorder(t, http.StatusOK, "")
	c := Config{Kind: KindWebhook, URL: srv.URL, Secret: "k", MinSeverity: "critical"}
	if err := SendTest(context.Background(), c, "https://console.example.com/channels/1"); err != nil {
		t.Fatal(err)
	}
	got := srv.only(t)
	var p WebhookPayload
	if err := json.Unmarshal(got.Body, &p); err != nil {
		t.Fatal(err)
	}
	if p.Event != EventTest || p.Severity != "info" || p.URL != "https://console.example.com/channels/1" || !VerifySignature("k", got.Body, got.Header.Get(SignatureHeader)) {
		t.Errorf("test payload %+v", p)
	}
	if !Accepts(c, TestMessage(time.Now(), "")) {
		t.Error("Accepts rejects the test message")
	}
	if err := SendTest(context.Background(), Config{Kind: KindWebhook}, ""); err == nil {
		t.Error("SendTest accepted an invalid config")
	}
}
