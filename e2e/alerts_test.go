package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/emersion/go-smtp"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/restic-manager/restic-manager/notify"
	"github.com/restic-manager/restic-manager/wire"
)

// hookReceiver is a webhook endpoint that checks signatures.
type hookReceiver struct {
	mu     sync.Mutex
	events []notify.WebhookPayload
	bad    int
}

func (h *hookReceiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	h.mu.Lock()
	defer h.mu.Unlock()
	if !notify.VerifySignature("hook-secret", body, r.Header.Get("X-RM-Signature")) {
		h.bad++
		w.WriteHeader(http.StatusUnauthorized)
		return
	}
	var p notify.WebhookPayload
	if err := json.Unmarshal(body, &p); err != nil {
		h.bad++
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	h.events = append(h.events, p)
}

func (h *hookReceiver) count(event, rule string) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, e := range h.events {
		if e.Event == event && e.Rule == rule {
			n++
		}
	}
	return n
}

// mailbox is a real SMTP server's (go-smtp) received messages.
type mailbox struct {
	mu   sync.Mutex
	msgs []string
}

type mailSession struct{ mb *mailbox }

func (s mailSession) Reset()                               {}
func (s mailSession) Logout() error                        { return nil }
func (s mailSession) Mail(string, *smtp.MailOptions) error { return nil }
func (s mailSession) Rcpt(string, *smtp.RcptOptions) error { return nil }
func (s mailSession) Data(r io.Reader) error {
	b, err := io.ReadAll(r)
	if err != nil {
		return err
	}
	s.mb.mu.Lock()
	s.mb.msgs = append(s.mb.msgs, string(b))
	s.mb.mu.Unlock()
	return nil
}

func (m *mailbox) find(sub string) bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, msg := range m.msgs {
		if strings.Contains(msg, sub) {
			return true
		}
	}
	return false
}

func startMailServer(t *testing.T) (*mailbox, int) {
	mb := &mailbox{}
	srv := smtp.NewServer(smtp.BackendFunc(func(*smtp.Conn) (smtp.Session, error) { return mailSession{mb}, nil }))
	srv.Domain = "mail.test"
	srv.ErrorLog = log.New(io.Discard, "", 0)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return mb, ln.Addr().(*net.TCPAddr).Port
}

func TestStaleBackupAlertsAndResolves(t *testing.T) {
	f := newFleet(t, "", "--alert-interval=1s")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)

	hook := &hookReceiver{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	mb, smtpPort := startMailServer(t)
	f.srv.do("POST", "/api/v1/channels", map[string]any{"name": "hook", "kind": "webhook", "min_severity": "warning",
		"config": map[string]any{"url": hs.URL, "secret": "hook-secret"}}, nil, 201)
	f.srv.do("POST", "/api/v1/channels", map[string]any{"name": "mail", "kind": "email", "min_severity": "critical",
		"config": map[string]any{"smtp_host": "127.0.0.1", "smtp_port": smtpPort, "from": "rm@test", "to": []string{"ops@test"}, "starttls": "none"}}, nil, 201)

	// The host never backed up and may go 6 s without: it goes stale.
	f.srv.do("PATCH", "/api/v1/hosts/"+f.host.ID, map[string]any{"stale_after": "6s"}, nil, 200)
	eventually(t, time.Minute, "a signed stale alert at the webhook", func() error {
		if hook.count("firing", "backup_stale") != 1 {
			return errorf("%d firing", hook.count("firing", "backup_stale"))
		}
		return nil
	})
	eventually(t, 30*time.Second, "the stale alert by e-mail", func() error {
		if !mb.find("backup_stale") {
			return errorf("no mail yet")
		}
		return nil
	})
	var alerts []struct {
		ID, Rule, State, Severity string
	}
	f.srv.do("GET", "/api/v1/alerts", nil, &alerts, 200)
	if len(alerts) != 1 || alerts[0].Rule != "backup_stale" || alerts[0].Severity != "critical" {
		t.Fatalf("firing alerts %+v", alerts)
	}

	// A successful backup resolves it, with one resolved notification.
	f.run(t, "backup", map[string]any{"paths": []string{makeTree(t, 5)}})
	eventually(t, 30*time.Second, "the resolved notification", func() error {
		if hook.count("resolved", "backup_stale") != 1 {
			return errorf("%d resolved", hook.count("resolved", "backup_stale"))
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	if n := hook.count("resolved", "backup_stale"); n != 1 {
		t.Fatalf("%d resolved notifications, want 1", n)
	}
	hook.mu.Lock()
	bad := hook.bad
	hook.mu.Unlock()
	if bad != 0 {
		t.Fatalf("%d webhook deliveries with a bad signature or body", bad)
	}

	// A failed job alerts once, however often it fails.
	for range 2 {
		id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{"/does/not/exist"}}})
		if j := f.srv.waitJob(id, time.Minute); j.Status != "failed" {
			t.Fatalf("backup of a missing path: %s", j.Status)
		}
	}
	eventually(t, 30*time.Second, "the job_failed alert", func() error {
		if hook.count("firing", "job_failed") < 1 {
			return errorf("none")
		}
		return nil
	})
	time.Sleep(2 * time.Second)
	if n := hook.count("firing", "job_failed"); n != 1 {
		t.Fatalf("%d job_failed notifications for two failures, want 1", n)
	}
}

func TestIntegrationUserAndHomeAssistant(t *testing.T) {
	f := newFleet(t, "", "--alert-interval=1s")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	var u struct{ Name, Password string }
	f.srv.do("POST", "/api/v1/mqtt-users", map[string]string{"name": "homeassistant"}, &u, 201)

	c, _, err := dialMQTT(t, f.srv, "ha-client", u.Name, u.Password, nil)
	if err != nil {
		t.Fatalf("integration user cannot connect: %v", err)
	}
	if code := c.subscribe(t, "homeassistant/#"); code >= 0x80 {
		t.Fatalf("subscribe discovery: %#x", code)
	}
	if code := c.subscribe(t, "restic-manager/v1/hosts/+/health"); code >= 0x80 {
		t.Fatalf("subscribe health: %#x", code)
	}
	for _, filter := range []string{wire.CommandsTopic(f.host.ID), "restic-manager/v1/hosts/+/commands", "#", "restic-manager/v1/#"} {
		if code := c.subscribe(t, filter); code < 0x80 {
			t.Errorf("integration user subscribed to %s", filter)
		}
	}
	if code := c.publish(t, wire.CommandsTopic(f.host.ID), []byte(`{}`), false); code != 0x87 {
		t.Errorf("integration user publishing a command: reason %#x, want 0x87", code)
	}

	f.srv.do("PUT", "/api/v1/settings", map[string]any{"ha_discovery": true}, nil, 200)
	configs := map[string]map[string]any{}
	var health map[string]any
	deadline := time.After(30 * time.Second)
	for len(configs) < 4 || health == nil || health["online"] != true {
		select {
		case p := <-c.received:
			if strings.HasPrefix(p.Topic, "homeassistant/") && strings.HasSuffix(p.Topic, "/config") {
				var cfg map[string]any
				if err := json.Unmarshal(p.Payload, &cfg); err != nil {
					t.Fatalf("discovery %s: %v", p.Topic, err)
				}
				configs[p.Topic] = cfg
			}
			if p.Topic == wire.HealthTopic(f.host.ID) {
				_ = json.Unmarshal(p.Payload, &health)
			}
		case <-deadline:
			t.Fatalf("got %d discovery configs and health %v", len(configs), health)
		}
	}
	for topic, cfg := range configs {
		dev, _ := cfg["device"].(map[string]any)
		ids, _ := dev["identifiers"].([]any)
		if cfg["unique_id"] == "" || cfg["state_topic"] != wire.HealthTopic(f.host.ID) || cfg["availability_topic"] != wire.StatusTopic(f.host.ID) || len(ids) != 1 {
			t.Errorf("%s: config %v is not what Home Assistant expects", topic, cfg)
		}
	}
	if health["status"] == nil || health["online"] != true {
		t.Errorf("health %v", health)
	}
	// Home Assistant's birth message brings the configs again.
	for len(c.received) > 0 {
		<-c.received
	}
	if code := c.publish(t, "homeassistant/status", []byte("online"), false); code != 0 {
		t.Fatalf("birth message refused: %#x", code)
	}
	birthDeadline := time.After(10 * time.Second)
	for republished := false; !republished; {
		select {
		case p := <-c.received:
			republished = strings.HasPrefix(p.Topic, "homeassistant/") && strings.HasSuffix(p.Topic, "/config")
		case <-birthDeadline:
			t.Fatal("discovery not republished after homeassistant/status online")
		}
	}
	// Deleting the host removes its entities (empty retained configs).
	stop(t, f.agent.Proc)
	f.srv.do("DELETE", "/api/v1/hosts/"+f.host.ID, nil, nil, 204)
	removed := map[string]bool{}
	delDeadline := time.After(10 * time.Second)
	for len(removed) < 4 {
		select {
		case p := <-c.received:
			if strings.HasSuffix(p.Topic, "/config") && len(p.Payload) == 0 {
				removed[p.Topic] = true
			}
		case <-delDeadline:
			t.Fatalf("%d of 4 discovery configs removed after the host was deleted", len(removed))
		}
	}
	f.srv.do("GET", "/api/v1/hosts/"+f.host.ID, nil, nil, 404)
}

func metricValue(t *testing.T, s *server, name string, labels map[string]string) float64 {
	t.Helper()
	resp, err := s.HTTP.Get(s.URL("/metrics"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	parser := expfmt.NewTextParser(model.UTF8Validation)
	families, err := parser.TextToMetricFamilies(bytes.NewReader(body))
	if err != nil {
		t.Fatalf("/metrics does not parse: %v", err)
	}
	fam, ok := families[name]
	if !ok {
		return 0
	}
	total := 0.0
next:
	for _, m := range fam.GetMetric() {
		for _, lp := range m.GetLabel() {
			if want, ok := labels[lp.GetName()]; ok && want != lp.GetValue() {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			total += m.GetCounter().GetValue()
		case m.Gauge != nil:
			total += m.GetGauge().GetValue()
		}
	}
	return total
}

func TestMetricsMoveWithJobs(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	if v := metricValue(t, f.srv, "restic_manager_agents_connected", nil); v != 1 {
		t.Errorf("agents connected %v, want 1", v)
	}
	before := metricValue(t, f.srv, "restic_manager_jobs_total", map[string]string{"kind": "init", "status": "succeeded"})
	f.initRepo(t)
	eventually(t, 10*time.Second, "the jobs counter", func() error {
		if after := metricValue(t, f.srv, "restic_manager_jobs_total", map[string]string{"kind": "init", "status": "succeeded"}); after != before+1 {
			return errorf("%v → %v", before, after)
		}
		return nil
	})
	if v := metricValue(t, f.srv, "restic_manager_mqtt_messages_ingested_total", map[string]string{"kind": "result"}); v < 1 {
		t.Errorf("ingested results %v", v)
	}
}
