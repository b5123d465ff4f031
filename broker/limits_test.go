package broker

import (
	"bytes"
	"context"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"github.com/mochi-mqtt/server/v2/listeners"

	"github.com/restic-manager/restic-manager/wire"
)

// testAuth admits one agent and one integration account.
type testAuth struct{}

const (
	testAgent    = wire.HostIDPrefix + "flood"
	testAgentPw  = "agent-secret"
	testIntegr   = "ha"
	testIntegrPw = "ha-secret"
)

func (testAuth) AuthenticateHost(id string, pw []byte) bool {
	return id == testAgent && string(pw) == testAgentPw
}

func (testAuth) AuthenticateIntegration(user string, pw []byte) bool {
	return user == testIntegr && string(pw) == testIntegrPw
}

// countIngest stores nothing and counts what reached it.
type countIngest struct {
	mu sync.Mutex
	n  int
}

func (c *countIngest) Ingest(context.Context, string, wire.Topic, []byte) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.n++
	return nil
}

// limitedEvents records Options.OnRateLimited.
type limitedEvents struct {
	mu  sync.Mutex
	got []string
}

func (l *limitedEvents) add(role, limit string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.got = append(l.got, role+"/"+limit)
}

func (l *limitedEvents) list() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.got...)
}

// startLimited runs the real broker (its hooks as the server has them) on
// a loopback port with the given limits.
func startLimited(t *testing.T, limits *Limits) (addr string, ev *limitedEvents) {
	t.Helper()
	ev = &limitedEvents{}
	_, addr = startTestBroker(t, Options{Limits: limits, OnRateLimited: ev.add}, &countIngest{})
	return addr, ev
}

// startTestBroker runs the real broker with opts on a loopback port,
// ingesting into ingest.
func startTestBroker(t *testing.T, opts Options, ingest Ingestor) (*Server, string) {
	t.Helper()
	opts.Logger = slog.New(slog.DiscardHandler)
	s, err := New(opts)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.mq.AddListener(listeners.NewNet("test", ln)); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(testAuth{}, ingest); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, ln.Addr().String()
}

// rawClient is a plain MQTT 5 client (no reconnects) that keeps the
// server's DISCONNECT.
type rawClient struct {
	c    *paho.Client
	disc chan *paho.Disconnect
}

// dial connects as user; it returns the CONNACK's reason code when the
// broker refuses.
func dial(t *testing.T, addr, clientID, user, pw string) (*rawClient, byte) {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	r := &rawClient{disc: make(chan *paho.Disconnect, 1)}
	r.c = paho.NewClient(paho.ClientConfig{
		ClientID:           clientID,
		Conn:               conn,
		OnServerDisconnect: func(d *paho.Disconnect) { r.disc <- d },
		OnClientError:      func(error) {},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := r.c.Connect(ctx, &paho.Connect{
		ClientID: clientID, KeepAlive: 30, CleanStart: true,
		UsernameFlag: true, Username: user, PasswordFlag: true, Password: []byte(pw),
	})
	if err != nil {
		if ca != nil {
			return nil, ca.ReasonCode
		}
		t.Fatalf("connect %s: %v", user, err)
	}
	t.Cleanup(func() { _ = r.c.Disconnect(&paho.Disconnect{}) })
	return r, 0
}

// flood publishes QoS-0 messages of size bytes on topic until the broker
// disconnects the client (or n messages went out), and returns the
// DISCONNECT it sent.
func (r *rawClient) flood(t *testing.T, topic string, size, n int) *paho.Disconnect {
	t.Helper()
	payload := bytes.Repeat([]byte("x"), size)
	for i := 0; i < n; i++ {
		select {
		case <-r.c.Done():
			i = n
			continue
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		_, err := r.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 0, Payload: payload})
		cancel()
		if err != nil {
			break
		}
	}
	select {
	case d := <-r.disc:
		return d
	case <-time.After(20 * time.Second):
		t.Fatalf("the broker sent no DISCONNECT to a client that flooded %d messages of %d bytes", n, size)
		return nil
	}
}

// An agent that sends messages faster than its limit is disconnected
// with 0x96 and counted; reconnecting at once is refused with 0x9F.
func TestAgentFloodIsDisconnected(t *testing.T) {
	addr, ev := startLimited(t, &Limits{
		AgentMessages: Limit{Rate: 1, Burst: 20},
		AgentBytes:    Limit{Rate: -1},
	})
	topic := wire.ProgressTopic(testAgent, "job-1")
	c, _ := dial(t, addr, testAgent, testAgent, testAgentPw)
	d := c.flood(t, topic, 100, 1000)
	if d.ReasonCode != 0x96 {
		t.Errorf("disconnect reason 0x%02x, want 0x96 (message rate too high)", d.ReasonCode)
	}
	if got := ev.list(); len(got) != 1 || got[0] != "agent/messages" {
		t.Errorf("rate-limited events %v, want [agent/messages]", got)
	}
	// The bucket belongs to the credential, not the connection.
	if _, code := dial(t, addr, testAgent, testAgent, testAgentPw); code != 0x9F {
		t.Errorf("immediate reconnect: CONNACK 0x%02x, want 0x9F (connection rate exceeded)", code)
	}
}

func TestAgentByteQuota(t *testing.T) {
	addr, ev := startLimited(t, &Limits{
		AgentMessages: Limit{Rate: -1},
		// The burst is raised to the largest packet (about 2 MiB).
		AgentBytes: Limit{Rate: 1024, Burst: 1},
	})
	c, _ := dial(t, addr, testAgent, testAgent, testAgentPw)
	d := c.flood(t, wire.ProgressTopic(testAgent, "job-1"), 256<<10, 40)
	if d.ReasonCode != 0x97 {
		t.Errorf("disconnect reason 0x%02x, want 0x97 (quota exceeded)", d.ReasonCode)
	}
	if got := ev.list(); len(got) != 1 || got[0] != "agent/bytes" {
		t.Errorf("rate-limited events %v, want [agent/bytes]", got)
	}
}

// An integration account has no byte budget, but a message rate: a flood
// of anything (here the one topic it may publish, and pings of the
// subscribe kind) ends with 0x96.
func TestIntegrationFloodIsDisconnected(t *testing.T) {
	addr, ev := startLimited(t, &Limits{
		AgentBytes:          Limit{Rate: 1, Burst: 1},
		IntegrationMessages: Limit{Rate: 1, Burst: 30},
	})
	c, _ := dial(t, addr, "ha-client", testIntegr, testIntegrPw)
	// 10 large messages: far past the agents' byte budget, within the
	// integration's message burst.
	payload := bytes.Repeat([]byte("x"), 512<<10)
	for range 10 {
		if _, err := c.c.Publish(context.Background(), &paho.Publish{Topic: "homeassistant/status", QoS: 0, Payload: payload}); err != nil {
			t.Fatal(err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: wire.Prefix + "/hosts/+/status"}}}); err != nil {
		t.Fatalf("an integration within its limits was cut off: %v", err)
	}
	d := c.flood(t, "homeassistant/status", 10, 1000)
	if d.ReasonCode != 0x96 {
		t.Errorf("disconnect reason 0x%02x, want 0x96", d.ReasonCode)
	}
	if got := ev.list(); len(got) != 1 || got[0] != "integration/messages" {
		t.Errorf("rate-limited events %v, want [integration/messages]", got)
	}
}

// Default limits let a real agent's traffic through: an index upload of a
// 200,000-node snapshot (75 chunks of about 525 KiB, sent as fast as the
// broker acknowledges them) with progress beside it.
func TestDefaultLimitsAdmitAnIndexUpload(t *testing.T) {
	addr, ev := startLimited(t, &Limits{})
	c, _ := dial(t, addr, testAgent, testAgent, testAgentPw)
	chunk := bytes.Repeat([]byte("x"), 525<<10)
	ctx := context.Background()
	for i := range 75 {
		if _, err := c.c.Publish(ctx, &paho.Publish{Topic: wire.OutputTopic(testAgent, "job-1"), QoS: 1, Payload: chunk}); err != nil {
			t.Fatalf("chunk %d: %v", i, err)
		}
		if _, err := c.c.Publish(ctx, &paho.Publish{Topic: wire.ProgressTopic(testAgent, "job-1"), QoS: 1, Payload: []byte(`{}`)}); err != nil {
			t.Fatalf("progress %d: %v", i, err)
		}
	}
	if got := ev.list(); len(got) != 0 {
		t.Errorf("an index upload was rate-limited: %v", got)
	}
}

func TestLimitDefaults(t *testing.T) {
	l := Limits{AgentMessages: Limit{Rate: 50}, AgentBytes: Limit{Rate: -1}}.withDefaults(2 << 20)
	if l.AgentMessages.Burst != 1000 {
		t.Errorf("a rate of 50/s got a burst of %v, want 1000 (20 s)", l.AgentMessages.Burst)
	}
	if !l.AgentBytes.off() {
		t.Error("a negative rate did not turn the byte limit off")
	}
	if l.IntegrationMessages.Rate != DefaultIntegrationMsgRate {
		t.Errorf("integration rate %v", l.IntegrationMessages.Rate)
	}
	d := Limits{AgentBytes: Limit{Rate: 1000}}.withDefaults(2 << 20)
	if d.AgentBytes.Burst != 2<<20 {
		t.Errorf("byte burst %v, want the largest packet", d.AgentBytes.Burst)
	}
}

// Without Options.Limits (a broker measured bare) nothing is limited.
func TestNilLimitsLimitNothing(t *testing.T) {
	addr, ev := startLimited(t, nil)
	c, _ := dial(t, addr, testAgent, testAgent, testAgentPw)
	ctx := context.Background()
	for range 3000 {
		if _, err := c.c.Publish(ctx, &paho.Publish{Topic: wire.ProgressTopic(testAgent, "job-1"), QoS: 0, Payload: []byte(`{}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := c.c.Publish(ctx, &paho.Publish{Topic: wire.ProgressTopic(testAgent, "job-1"), QoS: 1, Payload: []byte(`{}`)}); err != nil {
		t.Fatalf("cut off without limits: %v", err)
	}
	if got := ev.list(); len(got) != 0 {
		t.Errorf("rate-limited without limits: %v", got)
	}
}

// An older agent's retained schedule report is stored by the console but
// not kept retained by the broker (one retained message fewer per host),
// while its retained status still is.
func TestReportedNotRetained(t *testing.T) {
	ingest := &countIngest{}
	s, addr := startTestBroker(t, Options{}, ingest)
	c, _ := dial(t, addr, testAgent, testAgent, testAgentPw)
	ctx := context.Background()
	for _, topic := range []string{wire.SchedulesReportedTopic(testAgent), wire.StatusTopic(testAgent)} {
		if _, err := c.c.Publish(ctx, &paho.Publish{Topic: topic, QoS: 1, Retain: true, Payload: []byte(`{}`)}); err != nil {
			t.Fatalf("%s: %v", topic, err)
		}
	}
	ingest.mu.Lock()
	n := ingest.n
	ingest.mu.Unlock()
	if n != 2 {
		t.Fatalf("the console got %d of 2 messages", n)
	}
	if got := s.mq.Topics.Messages(wire.SchedulesReportedTopic(testAgent)); len(got) != 0 {
		t.Errorf("the schedule report is kept retained: %d messages", len(got))
	}
	if got := s.mq.Topics.Messages(wire.StatusTopic(testAgent)); len(got) != 1 {
		t.Errorf("the status is not retained: %d messages", len(got))
	}
}
