package console

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// freeAddr reserves a loopback port by binding and releasing it.
func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// An agent with a real credential that floods the real broker is
// disconnected with 0x96, and /metrics counts it, wired as the server
// wires them.
func TestAgentFloodCountedInMetrics(t *testing.T) {
	st := teststore.Open(t)
	const host, password = "host-flood", "agent-password"
	if err := st.CreateHost(storage.Host{ID: host, Name: host, Enrolled: true, CredentialHash: token.Hash(password), CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var c *Console
	b, err := broker.New(broker.Options{
		Logger:        slog.New(slog.DiscardHandler),
		Limits:        &broker.Limits{AgentMessages: broker.Limit{Rate: 1, Burst: 10}},
		OnRateLimited: func(role, limit string) { c.RateLimited(role, limit) },
	})
	if err != nil {
		t.Fatal(err)
	}
	addr := freeAddr(t)
	if err := b.ListenTCP("mqtt", addr, nil); err != nil {
		t.Fatal(err)
	}
	c, err = New(Options{Store: st, Publisher: b, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if err := b.Serve(c, c); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = b.Close() })

	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	disc := make(chan *paho.Disconnect, 1)
	cl := paho.NewClient(paho.ClientConfig{ClientID: host, Conn: conn,
		OnServerDisconnect: func(d *paho.Disconnect) { disc <- d }, OnClientError: func(error) {}})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := cl.Connect(ctx, &paho.Connect{ClientID: host, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: host, PasswordFlag: true, Password: []byte(password)}); err != nil {
		t.Fatal(err)
	}
	// Progress of an unknown job: refused by ingest, but every message
	// counts against the sender's rate first.
	for i := 0; i < 1000; i++ {
		if _, err := cl.Publish(ctx, &paho.Publish{Topic: wire.ProgressTopic(host, "job-x"), QoS: 0, Payload: []byte(`{}`)}); err != nil {
			break
		}
	}
	select {
	case d := <-disc:
		if d.ReasonCode != 0x96 {
			t.Errorf("disconnect reason 0x%02x, want 0x96", d.ReasonCode)
		}
	case <-ctx.Done():
		t.Fatal("the flooding agent was not disconnected")
	}

	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `restic_manager_mqtt_clients_rate_limited_total{limit="messages",role="agent"} 1`
	if !strings.Contains(string(body), want) {
		t.Errorf("/metrics lacks %q", want)
	}
}

// /metrics with a token refuses a scrape without it; with the metrics on
// their own listener, the console's router does not serve them at all.
func TestMetricsTokenAndAddress(t *testing.T) {
	c, _, _ := newTestConsole(t, func(o *Options) { o.MetricsToken = "tok-metrics-1" })
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	get := func(url, auth string) int {
		req, _ := http.NewRequest("GET", url, nil)
		if auth != "" {
			req.Header.Set("Authorization", auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get(srv.URL+"/metrics", ""); code != http.StatusUnauthorized {
		t.Errorf("/metrics without the token: %d, want 401", code)
	}
	if code := get(srv.URL+"/metrics", "Bearer tok-metrics-1"); code != http.StatusOK {
		t.Errorf("/metrics with the token: %d, want 200", code)
	}

	c2, _, _ := newTestConsole(t, func(o *Options) { o.MetricsElsewhere = true })
	srv2 := httptest.NewServer(c2.Handler(nil))
	defer srv2.Close()
	if code := get(srv2.URL+"/metrics", ""); code != http.StatusNotFound {
		t.Errorf("/metrics on the console's address with --metrics-addr: %d, want 404", code)
	}
	msrv := httptest.NewServer(c2.MetricsHandler())
	defer msrv.Close()
	if code := get(msrv.URL+"/metrics", ""); code != http.StatusOK {
		t.Errorf("/metrics on its own address: %d, want 200", code)
	}
}

// /healthz answers 503 with the reason once the store has failed.
func TestHealthzReportsAFailedStore(t *testing.T) {
	c, st, _ := newTestConsole(t)
	srv := httptest.NewServer(c.Handler(func() bool { return true }))
	defer srv.Close()
	health := func() (int, string) {
		resp, err := http.Get(srv.URL + "/healthz")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := health(); code != http.StatusOK {
		t.Fatalf("healthy store: %d %s", code, body)
	}
	if err := st.Close(); err != nil {
		t.Fatal(err)
	}
	if code, body := health(); code != http.StatusServiceUnavailable || !strings.Contains(body, "closed") {
		t.Errorf("closed store: %d %s, want 503 saying the store is closed", code, body)
	}
}
