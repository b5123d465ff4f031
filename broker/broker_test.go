package broker

import (
	"context"
	"net"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	mqtt "github.com/mochi-mqtt/server/v2"

	"github.com/restic-manager/restic-manager/wire"
)

// integrationsOnly admits the integration account "ha" with password "pw".
type integrationsOnly struct{}

func (integrationsOnly) AuthenticateHost(string, []byte) bool { return false }
func (integrationsOnly) AuthenticateIntegration(user string, pw []byte) bool {
	return user == "ha" && string(pw) == "pw"
}
func (integrationsOnly) Ingest(context.Context, string, wire.Topic, []byte) error { return nil }

// DisconnectUser drops an integration's connection whatever client ID it
// chose, and leaves other users connected.
func TestDisconnectUserDropsItsConnections(t *testing.T) {
	s, err := New(Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.ListenTCP("t", "127.0.0.1:0", nil); err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(integrationsOnly{}, integrationsOnly{}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	l, _ := s.mq.Listeners.Get("t")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	conn, err := net.Dial("tcp", l.Address())
	if err != nil {
		t.Fatal(err)
	}
	dropped := make(chan struct{}, 1)
	c := paho.NewClient(paho.ClientConfig{Conn: conn, OnServerDisconnect: func(*paho.Disconnect) { dropped <- struct{}{} }})
	ack, err := c.Connect(ctx, &paho.Connect{ClientID: "home-assistant-1", Username: "ha", UsernameFlag: true, Password: []byte("pw"), PasswordFlag: true, KeepAlive: 30, CleanStart: true})
	if err != nil || ack.ReasonCode != 0 {
		t.Fatalf("connect: %v %+v", err, ack)
	}
	s.DisconnectUser("someone-else")
	select {
	case <-dropped:
		t.Fatal("another user's name dropped the connection")
	case <-time.After(100 * time.Millisecond):
	}
	s.DisconnectUser("ha")
	select {
	case <-dropped:
	case <-ctx.Done():
		t.Fatal("the connection was not dropped")
	}
}

// TestRetainedSweepSlowed: mochi's once-a-second copy of every retained
// message is slowed (sweep.go); the reflection finds its ticker.
func TestRetainedSweepSlowed(t *testing.T) {
	mq := mqtt.New(&mqtt.Options{InlineClient: true})
	if err := slowRetainedSweep(mq, time.Hour); err != nil {
		t.Fatal(err)
	}
}
