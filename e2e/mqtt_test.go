package e2e

import (
	"context"
	"crypto/tls"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/wire"
)

// credential enrols a host through the API, as an agent would, and returns
// its MQTT credential.
func (s *server) credential(name string) (wire.EnrollResponse, string) {
	s.t.Helper()
	h, er, err := s.API.EnrollHost(context.Background(), name)
	s.check(err)
	// The token works once.
	_, rcpt, err := seal.NewIdentity()
	s.check(err)
	s.do("POST", "/api/v1/enroll", wire.EnrollRequest{Token: h.EnrollToken, PublicKey: rcpt}, nil, 401)
	return er, h.ID
}

// mqttClient is a raw paho client: no autopaho, so every refusal is seen.
type mqttClient struct {
	c        *paho.Client
	received chan *paho.Publish
}

// dialBroker opens a connection to the server's broker, with TLS pinned to
// its CA unless the server is insecure.
func (s *server) dialBroker() (net.Conn, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	if s.Insecure {
		return d.Dial("tcp", s.MQTTAddr)
	}
	c, err := tls.DialWithDialer(d, "tcp", s.MQTTAddr, s.TLSConfig())
	if err != nil {
		return nil, err
	}
	// paho writes from several goroutines; a tls.Conn is not safe for that.
	return packets.NewThreadSafeConn(c), nil
}

func dialMQTT(t testing.TB, s *server, clientID, user, password string, will *paho.WillMessage) (*mqttClient, *paho.Connack, error) {
	t.Helper()
	conn, err := s.dialBroker()
	if err != nil {
		t.Fatalf("dial broker: %v", err)
	}
	mc := &mqttClient{received: make(chan *paho.Publish, 16)}
	mc.c = paho.NewClient(paho.ClientConfig{
		ClientID: clientID,
		Conn:     conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			mc.received <- pr.Packet
			return true, nil
		}},
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ca, err := mc.c.Connect(ctx, &paho.Connect{
		ClientID: clientID, Username: user, UsernameFlag: true, Password: []byte(password), PasswordFlag: true,
		KeepAlive: 30, CleanStart: true, WillMessage: will,
	})
	if err == nil {
		t.Cleanup(func() { _ = mc.c.Disconnect(&paho.Disconnect{ReasonCode: 0}) })
	}
	return mc, ca, err
}

func (m *mqttClient) subscribe(t testing.TB, filter string) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	sa, err := m.c.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{{Topic: filter, QoS: 1}}})
	if sa == nil {
		t.Fatalf("subscribe %s: %v", filter, err)
	}
	return sa.Reasons[0]
}

// publish returns the PUBACK reason code (0 = accepted).
func (m *mqttClient) publish(t testing.TB, topic string, payload []byte, retain bool) byte {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	pr, err := m.c.Publish(ctx, &paho.Publish{Topic: topic, Payload: payload, QoS: 1, Retain: retain})
	if pr == nil {
		t.Fatalf("publish %s: no PUBACK: %v", topic, err)
	}
	return pr.ReasonCode
}

func TestBrokerACL(t *testing.T) {
	s := newServer(t)
	a, aID := s.credential("host-a")
	b, bID := s.credential("host-b")
	if a.Username != aID || b.Username != bID {
		t.Fatalf("usernames %s/%s, want host IDs", a.Username, b.Username)
	}

	// Wrong password, unknown user, and another host's client ID are refused.
	if _, _, err := dialMQTT(t, s, aID, aID, "wrong", nil); err == nil {
		t.Error("connect with a wrong password succeeded")
	}
	if _, _, err := dialMQTT(t, s, "nobody", "nobody", a.Password, nil); err == nil {
		t.Error("connect as an unknown host succeeded")
	}
	if _, _, err := dialMQTT(t, s, bID, aID, a.Password, nil); err == nil {
		t.Error("host A took client ID of host B")
	}
	if _, _, err := dialMQTT(t, s, bID, bID, a.Password, nil); err == nil {
		t.Error("host A's password opened host B")
	}
	// A Will aimed at another host's status is refused at connect.
	if _, _, err := dialMQTT(t, s, aID, aID, a.Password, &paho.WillMessage{Topic: wire.StatusTopic(bID), Payload: []byte(`{"v":1,"online":false}`), QoS: 1, Retain: true}); err == nil {
		t.Error("connect with a Will on another host's topic succeeded")
	}

	ca, _, err := dialMQTT(t, s, aID, aID, a.Password, &paho.WillMessage{Topic: wire.StatusTopic(aID), Payload: []byte(`{"v":1,"online":false}`), QoS: 1, Retain: true})
	if err != nil {
		t.Fatalf("host A cannot connect with its own credential: %v", err)
	}
	for _, filter := range []string{
		wire.CommandsTopic(bID),
		"restic-manager/v1/hosts/+/commands",
		"restic-manager/v1/hosts/#",
		"restic-manager/v1/#",
		"#",
		"$share/g/" + wire.CommandsTopic(bID),
		"$SYS/#",
	} {
		if code := ca.subscribe(t, filter); code < 0x80 {
			t.Errorf("host A subscribed to %q (reason %#x)", filter, code)
		}
	}
	if code := ca.subscribe(t, wire.CommandsTopic(aID)); code >= 0x80 {
		t.Fatalf("host A cannot subscribe to its own commands: %#x", code)
	}

	// A command for B (sent to B's topic, whatever A subscribed) never reaches A.
	repo := s.createRepo("r", "/tmp/nowhere", "pw", aID, bID)
	s.createJob(bID, map[string]any{"kind": "init", "repo_id": repo})
	select {
	case p := <-ca.received:
		t.Fatalf("host A received %s", p.Topic)
	case <-time.After(1500 * time.Millisecond):
	}

	// A cannot publish B's status or results.
	now := time.Now().UTC().Format(time.RFC3339)
	status := []byte(`{"v":1,"online":true,"started_at":"` + now + `"}`)
	if code := ca.publish(t, wire.StatusTopic(bID), status, true); code != 0x87 {
		t.Errorf("A publishing B's status: reason %#x, want 0x87 not authorized", code)
	}
	if code := ca.publish(t, wire.ResultTopic(bID, "job-x"), []byte(`{"v":1,"job_id":"job-x","status":"succeeded","ended_at":"`+now+`"}`), false); code != 0x87 {
		t.Errorf("A publishing B's result: reason %#x, want 0x87", code)
	}
	// Nor commands to itself: only the console sends those.
	if code := ca.publish(t, wire.CommandsTopic(aID), []byte(`{}`), false); code != 0x87 {
		t.Errorf("A publishing a command: reason %#x, want 0x87", code)
	}
	if h := s.host(bID); h.Online {
		t.Error("host B shows online after A forged its status")
	}
	// Its own status is accepted.
	if code := ca.publish(t, wire.StatusTopic(aID), status, true); code != 0 {
		t.Fatalf("A publishing its own status: reason %#x", code)
	}
	s.waitOnline(aID, true)
}

func TestBadAgentInputIsRejected(t *testing.T) {
	s := newServer(t)
	a, aID := s.credential("host-a")
	c, _, err := dialMQTT(t, s, aID, aID, a.Password, nil)
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	big := `{"v":1,"online":true,"started_at":"` + now + `","hostname":"` + strings.Repeat("x", wire.MaxPayload) + `"}`
	cases := []struct {
		name, topic, payload string
	}{
		{"malformed status", wire.StatusTopic(aID), `{"v":1,"online":tru`},
		{"wrong version", wire.StatusTopic(aID), `{"v":2,"online":true,"started_at":"` + now + `"}`},
		{"no version", wire.StatusTopic(aID), `{"online":true,"started_at":"` + now + `"}`},
		{"oversized status", wire.StatusTopic(aID), big},
		{"unknown job result", wire.ResultTopic(aID, "job-unknown"), `{"v":1,"job_id":"job-unknown","status":"succeeded","ended_at":"` + now + `"}`},
		{"unknown job progress", wire.ProgressTopic(aID, "job-unknown"), `{"v":1,"job_id":"job-unknown","seq":1,"percent":5}`},
		{"result for another job id", wire.ResultTopic(aID, "job-a"), `{"v":1,"job_id":"job-b","status":"failed","ended_at":"` + now + `"}`},
		{"malformed result", wire.ResultTopic(aID, "job-a"), `not json at all`},
		{"fires not handled yet", wire.FiresTopic(aID), `{"v":1}`},
	}
	for _, tc := range cases {
		if code := c.publish(t, tc.topic, []byte(tc.payload), false); code != 0x99 {
			t.Errorf("%s: reason %#x, want 0x99 payload format invalid", tc.name, code)
		}
	}
	// Nothing was stored: the host is still offline and no job exists.
	if h := s.host(aID); h.Online {
		t.Error("a rejected status marked the host online")
	}
	var jobs []harness.Job
	s.do("GET", "/api/v1/jobs", nil, &jobs, 200)
	if len(jobs) != 0 {
		t.Errorf("rejected results created %d jobs", len(jobs))
	}
	// Each rejection is logged, and the console keeps serving.
	if n := strings.Count(s.Proc.Output(), "agent message rejected"); n < len(cases) {
		t.Errorf("%d rejections logged, want %d", n, len(cases))
	}
	resp, err := s.HTTP.Get(s.URL("/healthz"))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("healthz after bad input: %v %v", resp, err)
	}
	resp.Body.Close()
	if code := c.publish(t, wire.StatusTopic(aID), []byte(`{"v":1,"online":true,"started_at":"`+now+`"}`), true); code != 0 {
		t.Fatalf("valid status after bad input: reason %#x", code)
	}
	s.waitOnline(aID, true)

	// A packet over the broker's size limit drops the connection.
	huge := make([]byte, wire.MaxPayload+64<<10)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := c.c.Publish(ctx, &paho.Publish{Topic: wire.StatusTopic(aID), Payload: huge, QoS: 1}); err == nil {
		t.Error("an oversized packet was acknowledged")
	}
}

// dialSession connects with a persistent session (clean start false).
func dialSession(t *testing.T, s *server, id, password string) (*mqttClient, *paho.Connack) {
	t.Helper()
	conn, err := s.dialBroker()
	if err != nil {
		t.Fatal(err)
	}
	mc := &mqttClient{received: make(chan *paho.Publish, 16)}
	mc.c = paho.NewClient(paho.ClientConfig{ClientID: id, Conn: conn,
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){func(pr paho.PublishReceived) (bool, error) {
			mc.received <- pr.Packet
			return true, nil
		}}})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	expiry := uint32(3600)
	ca, err := mc.c.Connect(ctx, &paho.Connect{ClientID: id, Username: id, UsernameFlag: true, Password: []byte(password), PasswordFlag: true,
		KeepAlive: 30, CleanStart: false, Properties: &paho.ConnectProperties{SessionExpiryInterval: &expiry}})
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	return mc, ca
}

// A command queued in an offline agent's session, and the retained status,
// survive a server restart in the broker's own persistence.
func TestBrokerStatePersistsAcrossRestart(t *testing.T) {
	s := newServer(t)
	a, aID := s.credential("host-a")
	c, _ := dialSession(t, s, aID, a.Password)
	if code := c.subscribe(t, wire.CommandsTopic(aID)); code >= 0x80 {
		t.Fatalf("subscribe: %#x", code)
	}
	now := time.Now().UTC().Format(time.RFC3339)
	if code := c.publish(t, wire.StatusTopic(aID), []byte(`{"v":1,"online":true,"started_at":"`+now+`"}`), true); code != 0 {
		t.Fatalf("status: %#x", code)
	}
	_ = c.c.Disconnect(&paho.Disconnect{ReasonCode: 0})
	time.Sleep(300 * time.Millisecond)

	repo := s.createRepo("r", "/srv/nowhere", "pw", aID)
	jobID := s.createJob(aID, map[string]any{"kind": "init", "repo_id": repo})

	stop(t, s.Proc)
	s2 := startServer(t, s.Data, s.HTTPAddr, s.MQTTAddr)

	c2, ca := dialSession(t, s2, aID, a.Password)
	if !ca.SessionPresent {
		t.Fatal("session not present after server restart")
	}
	select {
	case p := <-c2.received:
		cmd, err := wire.DecodeCommand(p.Payload)
		if err != nil || cmd.JobID != jobID {
			t.Fatalf("received %s %v, want the command for %s", p.Topic, err, jobID)
		}
		if strings.Contains(string(p.Payload), "pw") && strings.Contains(string(p.Payload), "/srv/nowhere") {
			t.Fatal("the command carries the repository in clear text")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("queued command not delivered after server restart")
	}
	if code := c2.subscribe(t, wire.StatusTopic(aID)); code >= 0x80 {
		t.Fatalf("subscribe own status: %#x", code)
	}
	select {
	case p := <-c2.received:
		if p.Topic != wire.StatusTopic(aID) || !p.Retain {
			t.Fatalf("got %s retain=%v, want the retained status", p.Topic, p.Retain)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("retained status lost across restart")
	}
}
