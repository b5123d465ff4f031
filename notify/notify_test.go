package notify

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestSeverityParseAndString(t *testing.T) {
	cases := map[string]Severity{
		"info": Info, "INFO": Info, " warning ": Warning, "warn": Warning,
		"critical": Critical, "Crit": Critical,
	}
	for in, want := range cases {
		got, err := ParseSeverity(in)
		if err != nil || got != want {
			t.Errorf("ParseSeverity(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "error", "fatal", "3"} {
		if _, err := ParseSeverity(bad); err == nil {
			t.Errorf("ParseSeverity(%q) succeeded", bad)
		}
	}
	if !(Info < Warning && Warning < Critical) {
		t.Fatal("severity order broken")
	}
	for s, want := range map[Severity]string{Info: "info", Warning: "warning", Critical: "critical", 7: "Severity(7)"} {
		if s.String() != want {
			t.Errorf("%d.String() = %q, want %q", int(s), s.String(), want)
		}
	}
	// JSON round trip through TextMarshaler.
	b, err := json.Marshal(struct{ S Severity }{Critical})
	if err != nil || string(b) != `{"S":"critical"}` {
		t.Fatalf("marshal: %s %v", b, err)
	}
	var v struct{ S Severity }
	if err := json.Unmarshal([]byte(`{"S":"warning"}`), &v); err != nil || v.S != Warning {
		t.Fatalf("unmarshal: %v %v", v.S, err)
	}
	if err := json.Unmarshal([]byte(`{"S":"loud"}`), &v); err == nil {
		t.Fatal("unmarshal of unknown severity succeeded")
	}
}

func TestWantsAndAccepts(t *testing.T) {
	cases := []struct {
		min  string
		sev  Severity
		want bool
	}{
		{"", Info, false}, {"", Warning, true}, {"", Critical, true}, // default warning
		{"info", Info, true}, {"info", Critical, true},
		{"warning", Info, false}, {"warning", Warning, true},
		{"critical", Warning, false}, {"critical", Critical, true},
		{"bogus", Info, true}, // invalid threshold never silences alerts
	}
	for _, c := range cases {
		cfg := Config{Kind: KindSlack, MinSeverity: c.min}
		if got := Wants(cfg, c.sev); got != c.want {
			t.Errorf("Wants(min=%q, %v) = %v, want %v", c.min, c.sev, got, c.want)
		}
		m := Message{Event: EventFiring, Severity: c.sev}
		if got := Accepts(cfg, m); got != c.want {
			t.Errorf("Accepts(min=%q, firing %v) = %v, want %v", c.min, c.sev, got, c.want)
		}
	}
	cfg := Config{Kind: KindSlack, MinSeverity: "critical"}
	if !Accepts(cfg, Message{Event: EventTest, Severity: Info}) {
		t.Error("test events must bypass severity routing")
	}
	if Accepts(cfg, Message{Event: EventResolved, Severity: Warning}) {
		t.Error("resolved warning routed to a critical-only channel")
	}
}

func TestValidate(t *testing.T) {
	email := func(mod func(*Config)) Config {
		c := Config{Kind: KindEmail, SMTPHost: "mail.example.com", From: "RM <rm@example.com>",
			To: []string{"ops@example.com"}, Username: "rm", Password: "pw"}
		if mod != nil {
			mod(&c)
		}
		return c
	}
	valid := []Config{
		{Kind: KindWebhook, URL: "https://hooks.example.com/rm", Secret: "k"},
		{Kind: KindWebhook, URL: "http://10.0.0.5:8080/hook"},
		{Kind: KindSlack, URL: "https://hooks.slack.com/services/T/B/X", MinSeverity: "critical"},
		{Kind: KindDiscord, URL: "https://discord.com/api/webhooks/1/tok"},
		{Kind: KindNtfy, URL: "https://ntfy.sh/rm-alerts"},
		{Kind: KindNtfy, URL: "https://ntfy.example.com", Topic: "rm_alerts-1"},
		{Kind: KindGotify, URL: "https://gotify.example.com", Secret: "AbCd"},
		email(nil),
		email(func(c *Config) { c.Username, c.Password = "", "" }),
		email(func(c *Config) { c.StartTLS = StartTLSOpportunistic; c.SMTPPort = 25 }),
		email(func(c *Config) { c.StartTLS = StartTLSNone; c.SMTPHost = "127.0.0.1" }),
		email(func(c *Config) { c.StartTLS = StartTLSNone; c.SMTPHost = "localhost" }),
		email(func(c *Config) { c.StartTLS = StartTLSNone; c.Username, c.Password = "", "" }),
	}
	for i, c := range valid {
		if err := c.Validate(); err != nil {
			t.Errorf("valid[%d] (%s): %v", i, c.Kind, err)
		}
	}

	invalid := []struct {
		cfg  Config
		want string
	}{
		{Config{}, "kind is required"},
		{Config{Kind: "pager"}, `unknown channel kind "pager"`},
		{Config{Kind: KindWebhook}, "url is required"},
		{Config{Kind: KindSlack, URL: "ftp://files.example.com/x"}, `scheme must be http or https, not "ftp"`},
		{Config{Kind: KindDiscord, URL: "hooks.example.com/x"}, "scheme must be http or https"},
		{Config{Kind: KindWebhook, URL: "https:///nohost"}, "missing host"},
		{Config{Kind: KindWebhook, URL: "https://h/x", MinSeverity: "loud"}, "min_severity"},
		{Config{Kind: KindNtfy, URL: "https://ntfy.sh/"}, "ntfy needs a topic"},
		{Config{Kind: KindNtfy, URL: "https://ntfy.sh", Topic: "a/b"}, "topic: must be"},
		{Config{Kind: KindGotify, URL: "https://g.example.com"}, "gotify needs an application token"},
		{email(func(c *Config) { c.SMTPHost = "" }), "smtp_host is required"},
		{email(func(c *Config) { c.SMTPHost = "mail.example.com:587" }), "smtp_host: must be a host name"},
		{email(func(c *Config) { c.SMTPPort = 70000 }), "smtp_port"},
		{email(func(c *Config) { c.From = "" }), "from is required"},
		{email(func(c *Config) { c.From = "not an address" }), "from:"},
		{email(func(c *Config) { c.To = nil }), "at least one recipient"},
		{email(func(c *Config) { c.To = []string{"ok@example.com", "bad@"} }), `to: "bad@"`},
		{email(func(c *Config) { c.StartTLS = "always" }), "starttls:"},
		{email(func(c *Config) { c.Username = "" }), "username is required"},
		{email(func(c *Config) { c.Password = "" }), "password is required"},
		{email(func(c *Config) { c.StartTLS = StartTLSNone }), "clear text"},
	}
	for i, c := range invalid {
		err := c.cfg.Validate()
		if err == nil {
			t.Errorf("invalid[%d] (%s): Validate succeeded, want %q", i, c.cfg.Kind, c.want)
			continue
		}
		if !strings.Contains(err.Error(), c.want) {
			t.Errorf("invalid[%d] (%s): error %q does not contain %q", i, c.cfg.Kind, err, c.want)
		}
	}

	// Several problems are all reported.
	err := Config{Kind: KindEmail}.Validate()
	for _, want := range []string{"smtp_host", "from", "recipient"} {
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("combined error %v lacks %q", err, want)
		}
	}

	// Errors never echo secrets or URLs that carry them.
	secretCfgs := []Config{
		{Kind: KindSlack, URL: "https://hooks.slack.com/services/T0/B0/s3cr3tT0ken\x7f"},
		{Kind: KindWebhook, URL: "gopher://user:s3cr3tT0ken@h/x"},
		{Kind: KindGotify, URL: "ftp://h/?token=s3cr3tT0ken", Secret: "s3cr3tT0ken"},
		{Kind: KindEmail, SMTPHost: "smtp.example.com", Username: "u", Password: "s3cr3tT0ken", StartTLS: "none", From: "a@b", To: []string{"c@d"}},
	}
	for i, c := range secretCfgs {
		err := c.Validate()
		if err == nil {
			t.Fatalf("secretCfgs[%d]: expected an error", i)
		}
		if strings.Contains(err.Error(), "s3cr3tT0ken") {
			t.Errorf("secretCfgs[%d]: error leaks secret: %v", i, err)
		}
		if _, err := New(c); err == nil || strings.Contains(err.Error(), "s3cr3tT0ken") {
			t.Errorf("secretCfgs[%d]: New: %v", i, err)
		}
	}
}

func TestTextFormatting(t *testing.T) {
	m := Message{Event: EventFiring, Rule: "job_failed", HostID: "h1", HostName: "web1", Severity: Critical}
	if got := subject(m); got != "[FIRING critical] job_failed on web1 (h1)" {
		t.Errorf("generated subject = %q", got)
	}
	m.Title = "Backup\r\nBcc: evil@example.com"
	m.Event = "firing\r\nX-Evil: 1"
	if got := subject(m); strings.ContainsAny(got, "\r\n") {
		t.Errorf("subject keeps line breaks: %q", got)
	}
	if got := subject(Message{Title: strings.Repeat("é", 300)}); len(got) > maxSubjectLen {
		t.Errorf("subject not truncated: %d bytes", len(got))
	}
	if got := truncate("aé€b", 5); got != "a…" {
		t.Errorf("truncate = %q", got)
	}
}
