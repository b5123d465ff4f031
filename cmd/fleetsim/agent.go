package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/packets"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/wire"
)

// simAgent is one simulated endpoint: an enrolled host and its MQTT
// connection. It keeps only what the scenarios measure; everything it does
// on the wire goes through paho and the wire package, as the real agent's.
type simAgent struct {
	idx      int
	id       string // host ID = MQTT username = client ID
	password string
	repoID   string
	sim      *sim
	quiet    bool // a bare-broker publisher: its connection loss is expected at teardown

	mu sync.Mutex
	cl *paho.Client

	// rollout: the desired version received and when.
	desiredVersion atomic.Int64
	desiredAt      atomic.Int64 // unix nanoseconds
	scheduleID     string       // from the API's answer to PUT
	// policy scenario: this agent's first desired state carrying the
	// edited policy's schedule was counted (a late or repeated one is not).
	policySeen, policyAcked atomic.Bool
	scheduleVer             int64

	commands atomic.Int64 // non-cancel commands received
}

// cmdEvent is a command an agent received.
type cmdEvent struct {
	a   *simAgent
	cmd wire.Command
	at  time.Time
}

// sessionExpiry matches the real agent: a persistent session that outlives
// short disconnections.
const sessionExpiry = 7 * 24 * time.Hour

// receiveMaximum bounds the messages in flight to one agent. paho sizes its
// per-client inbound channel by it (64 Ki pointers by default: 512 KiB per
// client, 5 GiB at 10,000).
const receiveMaximum = 16

// connect dials the broker and completes the MQTT 5 handshake. It returns
// when the CONNACK arrived.
func (a *simAgent) connect(ctx context.Context, addr string) error {
	d := net.Dialer{Timeout: 30 * time.Second}
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return fmt.Errorf("agent %d: dial: %w", a.idx, err)
	}
	offline, err := wire.Encode(&wire.Status{Online: false, AgentVersion: "fleetsim", OS: "linux", Arch: "amd64"})
	if err != nil {
		conn.Close()
		return err
	}
	cl := paho.NewClient(paho.ClientConfig{
		ClientID:          a.id,
		Conn:              packets.NewThreadSafeConn(conn),
		OnPublishReceived: []func(paho.PublishReceived) (bool, error){a.onPublish},
		PacketTimeout:     2 * time.Minute,
		OnClientError: func(err error) {
			if !a.quiet {
				a.sim.connLost(a, err)
			}
		},
		OnServerDisconnect: func(d *paho.Disconnect) {
			if !a.quiet {
				a.sim.connLost(a, fmt.Errorf("server disconnect, reason %d", d.ReasonCode))
			}
		},
	})
	exp := uint32(sessionExpiry / time.Second)
	rm := uint16(receiveMaximum)
	ca, err := cl.Connect(ctx, &paho.Connect{
		ClientID: a.id, Username: a.id, UsernameFlag: true, Password: []byte(a.password), PasswordFlag: true,
		KeepAlive: 120, CleanStart: false,
		WillMessage: &paho.WillMessage{Topic: wire.StatusTopic(a.id), Payload: offline, QoS: 1, Retain: true},
		Properties:  &paho.ConnectProperties{SessionExpiryInterval: &exp, ReceiveMaximum: &rm},
	})
	if err != nil {
		code := -1
		if ca != nil {
			code = int(ca.ReasonCode)
		}
		return fmt.Errorf("agent %d: connect (reason %d): %w", a.idx, code, err)
	}
	a.mu.Lock()
	a.cl = cl
	a.mu.Unlock()
	return nil
}

// client is the live paho client (nil before connect).
func (a *simAgent) client() *paho.Client {
	a.mu.Lock()
	defer a.mu.Unlock()
	return a.cl
}

// subscribe takes the agent's two inbound topics, as the real agent does on
// every connection.
func (a *simAgent) subscribe(ctx context.Context) error {
	cl := a.client()
	if cl == nil {
		return fmt.Errorf("agent %d: not connected", a.idx)
	}
	_, err := cl.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
		{Topic: wire.CommandsTopic(a.id), QoS: 1},
		{Topic: wire.SchedulesDesiredTopic(a.id), QoS: 1},
	}})
	if err != nil {
		return fmt.Errorf("agent %d: subscribe: %w", a.idx, err)
	}
	return nil
}

// publish sends one QoS-1 message and waits for its PUBACK, which the
// embedded broker sends only after the console stored the message.
func (a *simAgent) publish(ctx context.Context, topic string, p wire.Payload, retain bool) error {
	b, err := wire.Encode(p)
	if err != nil {
		return fmt.Errorf("agent %d: encode: %w", a.idx, err)
	}
	return a.publishRaw(ctx, topic, b, retain)
}

func (a *simAgent) publishRaw(ctx context.Context, topic string, b []byte, retain bool) error {
	cl := a.client()
	if cl == nil {
		return fmt.Errorf("agent %d: not connected", a.idx)
	}
	_, err := cl.Publish(ctx, &paho.Publish{Topic: topic, Payload: b, QoS: 1, Retain: retain})
	if err != nil {
		return fmt.Errorf("agent %d: publish %s: %w", a.idx, topic, err)
	}
	return nil
}

// publishStatus announces the agent online (retained), as after connecting.
func (a *simAgent) publishStatus(ctx context.Context, started time.Time) error {
	return a.publish(ctx, wire.StatusTopic(a.id), &wire.Status{
		Online: true, AgentVersion: "fleetsim", OS: "linux", Arch: "amd64", Hostname: fmt.Sprintf("sim-%05d", a.idx),
		ResticVersion: "0.18.1", StartedAt: started,
	}, true)
}

// onPublish runs in paho's per-client receive loop: it records what came
// and hands any reply to the shared worker pool, never publishing here.
func (a *simAgent) onPublish(pr paho.PublishReceived) (bool, error) {
	now := time.Now()
	p := pr.Packet
	switch p.Topic {
	case wire.SchedulesDesiredTopic(a.id):
		d, err := wire.DecodeSchedulesDesired(p.Payload)
		if err != nil {
			a.sim.fail(fmt.Errorf("agent %d: bad desired schedules: %w", a.idx, err))
			return true, nil
		}
		a.desiredVersion.Store(d.Version)
		a.desiredAt.Store(now.UnixNano())
		a.sim.onDesired(a, d, now)
	case wire.CommandsTopic(a.id):
		cmd, err := wire.DecodeCommand(p.Payload)
		if err != nil {
			a.sim.fail(fmt.Errorf("agent %d: bad command: %w", a.idx, err))
			return true, nil
		}
		if cmd.Kind == wire.JobCancel {
			return true, nil
		}
		a.commands.Add(1)
		a.sim.onCommand(cmdEvent{a: a, cmd: cmd, at: now})
	}
	return true, nil
}

// close drops the connection without a DISCONNECT (the Will goes out).
func (a *simAgent) close() {
	a.mu.Lock()
	cl := a.cl
	a.cl = nil
	a.mu.Unlock()
	if cl != nil {
		_ = cl.Disconnect(&paho.Disconnect{ReasonCode: 0x04}) // with Will: the console sees it go offline
	}
}

// pool runs tasks on a fixed set of goroutines: the simulator must not
// become the bottleneck by spawning a goroutine per message.
type pool struct {
	ch chan func()
	wg sync.WaitGroup
}

func newPool(workers int) *pool {
	p := &pool{ch: make(chan func(), workers*64)}
	for range workers {
		p.wg.Add(1)
		go func() {
			defer p.wg.Done()
			for f := range p.ch {
				f()
			}
		}()
	}
	return p
}

// submit queues f, blocking while the queue is full (back-pressure).
func (p *pool) submit(ctx context.Context, f func()) error {
	select {
	case p.ch <- f:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (p *pool) close() {
	close(p.ch)
	p.wg.Wait()
}

// errCounter keeps the first few errors of a kind and counts the rest.
type errCounter struct {
	mu    sync.Mutex
	n     int
	first []string
}

func (e *errCounter) add(err error) {
	if err == nil || errors.Is(err, context.Canceled) {
		return
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	e.n++
	if len(e.first) < 5 {
		e.first = append(e.first, err.Error())
	}
}

func (e *errCounter) take() (int, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	n, f := e.n, e.first
	e.n, e.first = 0, nil
	return n, f
}
