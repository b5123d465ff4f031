package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"log/slog"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/wire"
)

// ShareGroup is the shared-subscription group of the console: every
// agent → console message goes to exactly one member, so a second console
// process (a standby) would split the load instead of ingesting twice.
const ShareGroup = "console"

// agentFilters are the agent → console topics the console ingests.
var agentFilters = []string{
	wire.Prefix + "/hosts/+/" + wire.KindStatus,
	wire.Prefix + "/hosts/+/" + wire.KindSchedulesReported,
	wire.Prefix + "/hosts/+/" + wire.KindFires,
	wire.Prefix + "/hosts/+/jobs/+/" + wire.KindProgress,
	wire.Prefix + "/hosts/+/jobs/+/" + wire.KindResult,
	wire.Prefix + "/hosts/+/jobs/+/" + wire.KindOutput,
}

// ExternalOptions configure the console's connection to an external broker.
type ExternalOptions struct {
	// URL is mqtt://, mqtts://, ws:// or wss://.
	URL      *url.URL
	TLS      *tls.Config
	Username string
	Password []byte
	// ClientID defaults to Username (Mosquitto's use_username_as_clientid).
	ClientID string
	Logger   *slog.Logger
	// SessionExpiry keeps the console's subscriptions and the messages
	// queued for it while it is down (default 7 days).
	SessionExpiry time.Duration
}

// External is the console as an ordinary MQTT 5 client of a broker it does
// not run (Mosquitto, EMQX, VerneMQ, HiveMQ). Agent traffic arrives through
// shared subscriptions and is acknowledged only after Ingest stored it, so
// a console crash between delivery and storage loses nothing: the broker
// sends the message again when the console's session resumes.
type External struct {
	cm   *autopaho.ConnectionManager
	log  *slog.Logger
	opts ExternalOptions

	ingest Ingestor
	// The ingest workers (see received) and the ack queue. wctx ends when
	// Start's ctx does or on Close; Close waits for the workers.
	work     [ingestWorkers]chan *inbound
	wctx     context.Context
	wcancel  context.CancelFunc
	wg       sync.WaitGroup
	ackMu    sync.Mutex
	ackQueue []*inbound // arrival order; [ackHead:] await their ack
	ackHead  int
	// brokerReceiveMax is the broker's Receive Maximum from the last
	// CONNACK (see PublishParallelism).
	brokerReceiveMax atomic.Int32
	// onAck, if set (tests), sees every acknowledgement as it is made.
	onAck func(*paho.Publish)
	// started is closed once Start has made the connection manager (cm is
	// set before, so whoever sees it closed may use cm).
	started chan struct{}
	// subscribed is closed once the first connection's subscriptions are in.
	subscribed chan struct{}
	once       sync.Once
}

// NewExternal prepares the connection to an external broker: build the
// console with it as its publisher (it publishes nothing before Start),
// then Start it with the console's ingest.
func NewExternal(opts ExternalOptions) (*External, error) {
	if opts.URL == nil || opts.Username == "" {
		return nil, errors.New("broker: external broker URL and username are required")
	}
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "external-broker", "url", opts.URL.Redacted())
	if opts.ClientID == "" {
		opts.ClientID = opts.Username
	}
	if opts.SessionExpiry == 0 {
		opts.SessionExpiry = 7 * 24 * time.Hour
	}
	return &External{log: log, opts: opts, started: make(chan struct{}), subscribed: make(chan struct{})}, nil
}

// Start connects and keeps the connection up until ctx ends; messages for
// the console go to ingest, acknowledged once it stored them. It returns
// once the first connection attempt is under way; use AwaitConnection to
// wait for it.
func (e *External) Start(ctx context.Context, ingest Ingestor) error {
	if ingest == nil {
		return errors.New("broker: external broker ingest is required")
	}
	opts, log := e.opts, e.log
	e.ingest = ingest
	e.wctx, e.wcancel = context.WithCancel(ctx)
	for i := range e.work {
		e.work[i] = make(chan *inbound, receiveMaximum)
		e.wg.Add(1)
		go e.worker(e.work[i])
	}
	cfg := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{opts.URL},
		TlsCfg:                        opts.TLS,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(opts.SessionExpiry / time.Second),
		ConnectUsername:               opts.Username,
		ConnectPassword:               opts.Password,
		ReconnectBackoff:              autopaho.NewExponentialBackoff(250*time.Millisecond, 15*time.Second, time.Second, 2),
		OnConnectionUp:                e.connectionUp,
		ConnectPacketBuilder: func(cp *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			if cp.Properties == nil {
				cp.Properties = &paho.ConnectProperties{}
			}
			rm := uint16(receiveMaximum)
			cp.Properties.ReceiveMaximum = &rm
			return cp, nil
		},
		OnConnectError: func(err error) {
			log.Warn("cannot connect to the external broker; retrying", "error", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:                   opts.ClientID,
			EnableManualAcknowledgment: true,
			OnPublishReceived:          []func(paho.PublishReceived) (bool, error){e.received},
			OnClientError: func(err error) {
				log.Warn("external broker connection lost", "error", err)
			},
			OnServerDisconnect: func(d *paho.Disconnect) {
				log.Warn("external broker disconnected the console", "reason", d.ReasonCode)
			},
		},
	}
	cm, err := autopaho.NewConnection(ctx, cfg)
	if err != nil {
		e.wcancel()
		e.wg.Wait()
		return fmt.Errorf("broker: external connection: %w", err)
	}
	e.cm = cm
	close(e.started)
	return nil
}

func (e *External) connectionUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	subs := make([]paho.SubscribeOptions, 0, len(agentFilters)+1)
	for _, f := range agentFilters {
		subs = append(subs, paho.SubscribeOptions{Topic: "$share/" + ShareGroup + "/" + f, QoS: 1})
	}
	// Home Assistant's birth message: every console should hear it.
	subs = append(subs, paho.SubscribeOptions{Topic: homeAssistantStatus, QoS: 1})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sa, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: subs})
	if err != nil {
		e.log.Error("subscribing to agent topics failed", "error", err)
		return
	}
	for i, code := range sa.Reasons {
		if code >= 0x80 && i < len(subs) {
			e.log.Error("the external broker refused a subscription: check the console account's ACL", "filter", subs[i].Topic, "reason", code)
		}
	}
	e.once.Do(func() { close(e.subscribed) })
	var brokerRM uint16 = 65535 // MQTT 5's default when CONNACK omits it
	if ca.Properties != nil && ca.Properties.ReceiveMaximum != nil {
		brokerRM = *ca.Properties.ReceiveMaximum
	}
	e.brokerReceiveMax.Store(int32(brokerRM))
	e.log.Info("connected to the external broker", "session_present", ca.SessionPresent, "broker_receive_maximum", brokerRM)
}

// Concurrent ingest. paho hands every message to OnPublishReceived from
// one goroutine, in arrival order; ingesting there (a store commit and an
// fsync each, and for a fire a job whose command waits for its own PUBACK)
// left nothing for the store's group commit to batch: at 10,000 simulated
// agents on Mosquitto a 10,000-fire storm took 25.8 s with the console at
// 35 % of one core. received now only queues a message; ingestWorkers
// workers, chosen by a hash of the host ID, store them, so one host's
// messages are stored in arrival order and different hosts' at once, and
// the acknowledgements still leave in arrival order (MQTT-4.6.0-2) through
// the ack queue: its head is acknowledged once stored, never before.
const (
	// ingestWorkers bounds concurrent Ingest calls: enough for the group
	// commit to gather dozens of transactions per fsync and for fires'
	// commands to have their PUBACK round trips overlap, few enough that
	// one hash bucket's backlog stays short. 2,000 simulated agents on
	// Mosquitto, 2,000 fires → commands (2 busy cores, load 2.4–3.0):
	// 16 workers 3.95 s, 32 2.06 and 3.42 s, 64 1.66 and 1.82 s, 128
	// 2.44 s; serial ingest 4.26 s.
	ingestWorkers = 64
	// receiveMaximum is the Receive Maximum the console announces in its
	// CONNECT: how many QoS 1 messages the broker may have unacknowledged
	// with it. Without the property a broker may assume 65,535 (the MQTT 5
	// default; paho would buffer that many and its ack tracker scans its
	// list per message) — or, like Mosquitto 2, fall back to its
	// max_inflight_messages (default 20: TestExternalReceiveMaximum saw 20
	// held without the property), which starves the workers. 1,024 keeps
	// every worker busy with room for the acknowledgements held behind a
	// slow message, and bounds what the console buffers to 1,024 agent
	// messages; the rest waits in the broker's session queue
	// (max_queued_messages 100,000 in docs/external-broker.md and
	// internal/testenv).
	receiveMaximum = 1024
)

// inbound is one received message on its way to the store and its PUBACK.
type inbound struct {
	pk     *paho.Publish
	client *paho.Client // the connection it came on; its PUBACK goes there
	topic  wire.Topic
	done   bool // stored or rejected: may be acknowledged (guarded by ackMu)
}

// received queues a message for its host's worker and returns: paho calls
// it from its one reader path, which must not wait for the store.
func (e *External) received(pr paho.PublishReceived) (bool, error) {
	pk := pr.Packet
	in := &inbound{pk: pk, client: pr.Client}
	if pk.Topic == homeAssistantStatus {
		if string(pk.Payload) == "online" {
			if bl, ok := e.ingest.(BirthListener); ok {
				go bl.HomeAssistantOnline()
			}
		}
		e.enqueueAck(in)
		e.finish(in)
		return true, nil
	}
	t, err := wire.ParseTopic(pk.Topic)
	if err != nil || !t.FromAgent() {
		e.log.Warn("message on an unexpected topic dropped", "topic", pk.Topic)
		e.enqueueAck(in)
		e.finish(in)
		return true, nil
	}
	in.topic = t
	e.enqueueAck(in)
	// The broker keeps at most receiveMaximum messages unacknowledged
	// with us, and each worker's channel holds that many, so this send
	// waits only if the broker overruns the limit (or across a reconnect
	// while a store failure holds the old connection's messages): then
	// paho's reader waits too, which is the backpressure we want.
	select {
	case e.work[workerOf(t.Host)] <- in:
	case <-e.wctx.Done():
		// Shutting down: never stored, never acknowledged; the broker
		// delivers it again on the next session.
	}
	return true, nil
}

func workerOf(host string) int {
	h := fnv.New32a()
	_, _ = h.Write([]byte(host))
	return int(h.Sum32() % ingestWorkers)
}

// enqueueAck appends a message to the ack queue, in arrival order.
func (e *External) enqueueAck(in *inbound) {
	e.ackMu.Lock()
	e.ackQueue = append(e.ackQueue, in)
	e.ackMu.Unlock()
}

// finish marks a message stored (or rejected) and acknowledges the queue's
// head for as long as it is finished. A message that is never finished
// (its store keeps failing, or the console stops first) holds back every
// later acknowledgement: the broker then sends them all again.
func (e *External) finish(in *inbound) {
	e.ackMu.Lock()
	defer e.ackMu.Unlock()
	in.done = true
	q := e.ackQueue
	for e.ackHead < len(q) && q[e.ackHead].done {
		h := q[e.ackHead]
		// paho's Ack only marks the message; paho sends the PUBACKs of
		// the marked prefix of its own arrival list every 50 ms.
		if err := h.client.Ack(h.pk); err != nil {
			e.log.Warn("acknowledgement not sent; the broker will deliver again", "topic", h.pk.Topic, "error", err)
		}
		if e.onAck != nil {
			e.onAck(h.pk)
		}
		q[e.ackHead] = nil
		e.ackHead++
	}
	// Reuse the array: at most receiveMaximum messages (twice that across
	// a reconnect) are ever queued, so it stops growing.
	switch {
	case e.ackHead == len(q):
		e.ackQueue, e.ackHead = q[:0], 0
	case e.ackHead >= receiveMaximum:
		n := copy(q, q[e.ackHead:])
		clear(q[n:])
		e.ackQueue, e.ackHead = q[:n], 0
	}
}

// pending is how many messages await their acknowledgement.
func (e *External) pending() int {
	e.ackMu.Lock()
	defer e.ackMu.Unlock()
	return len(e.ackQueue) - e.ackHead
}

// worker stores the messages of its share of the hosts, one at a time in
// arrival order, until the console stops.
func (e *External) worker(ch <-chan *inbound) {
	defer e.wg.Done()
	for {
		select {
		case <-e.wctx.Done():
			return
		case in := <-ch:
			if e.store(in) {
				e.finish(in)
			}
		}
	}
}

// store ingests one message, retrying until it is stored or rejected; it
// reports false if the console stopped first (the message stays
// unacknowledged and the broker sends it again).
func (e *External) store(in *inbound) bool {
	t, pk := in.topic, in.pk
	// The broker's ACL (generated from the console's records, see
	// WriteMosquittoAuth) lets an agent publish only under its own host ID,
	// so the topic names the sender.
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(e.wctx, ingestTimeout)
		err := e.ingest.Ingest(ctx, t.Host, t, pk.Payload)
		cancel()
		switch {
		case err == nil:
			return true
		case errors.Is(err, ErrRejected):
			e.log.Warn("agent message rejected", "host", t.Host, "topic", pk.Topic, "bytes", len(pk.Payload), "error", err)
			return true
		}
		if e.wctx.Err() != nil {
			return false // stopping: the broker sends it again next session
		}
		// Not stored: never acknowledge it. Acknowledgements go out in
		// order, so this one holds back every later one too, and the
		// host's later messages wait behind it; retry until the store
		// recovers or the console stops.
		if attempt%10 == 0 {
			e.log.Error("agent message not stored; retrying before acknowledging", "host", t.Host, "topic", pk.Topic, "attempt", attempt+1, "error", err)
		}
		select {
		case <-e.wctx.Done():
			return false
		case <-time.After(min(time.Duration(attempt+1)*200*time.Millisecond, 5*time.Second)):
		}
	}
}

// AwaitConnection waits until the console is connected and subscribed.
func (e *External) AwaitConnection(ctx context.Context) error {
	select {
	case <-e.subscribed:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// Publish sends a console → agent message at QoS 1 and waits for the
// broker's acknowledgement, so a command reported sent is in the broker's
// hands (and its session queue when the agent is offline).
func (e *External) Publish(topic string, payload []byte, retain bool, expiry time.Duration) error {
	select {
	case <-e.started:
	default:
		return errors.New("external broker connection not started yet")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := e.cm.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("external broker not connected: %w", err)
	}
	p := &paho.Publish{Topic: topic, Payload: payload, QoS: 1, Retain: retain, Properties: &paho.PublishProperties{}}
	if expiry > 0 {
		secs := uint32((expiry + time.Second - 1) / time.Second)
		p.Properties.MessageExpiry = &secs
	}
	pr, err := e.cm.Publish(ctx, p)
	if err != nil {
		return fmt.Errorf("publish %s: %w", topic, err)
	}
	// 0x10 "no matching subscribers" is success for a retained or queued message.
	if pr != nil && pr.ReasonCode >= 0x80 {
		return fmt.Errorf("publish %s: broker answered reason %#x (check the console account's ACL)", topic, pr.ReasonCode)
	}
	return nil
}

// PublishParallelism implements fleet.ParallelPublisher: a bulk publish (a
// policy rollout) keeps as many Publish calls outstanding as the broker
// lets the console have unacknowledged (its CONNACK's Receive Maximum;
// Mosquitto 2 announces its max_inflight_messages, default 20). Each call
// waits a round trip for its PUBACK, so the embedded broker's 8 workers
// left the connection partly idle: at 10,000 hosts on Mosquitto the
// policy edit's PUT took 5.8 s. More than the window only queues in paho
// (BenchmarkExternalPublish, loopback, 2 busy cores: 8 → 75–115 µs per
// message, 20 → 65–99 µs, 64 → 69–81 µs: CPU-bound there; the window
// matters when the broker is remote or busy).
func (e *External) PublishParallelism() int {
	n := int(e.brokerReceiveMax.Load())
	if n == 0 {
		n = 20 // not connected yet: Mosquitto's default
	}
	return min(max(n, 8), 256)
}

// Disconnect cannot drop another client's connection through MQTT; a
// revoked agent is kept out from its next connection attempt by the
// regenerated password file.
func (e *External) Disconnect(string) {}

// Close disconnects cleanly.
func (e *External) Close() error {
	select {
	case <-e.started:
	default:
		return nil // never started
	}
	// Workers first: what they drop is never marked stored, so never
	// acknowledged (the broker sends it again next session), and paho's
	// reader, should it wait in received for a full worker queue, is let
	// go before Disconnect waits for it.
	e.wcancel()
	e.wg.Wait()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.cm.Disconnect(ctx)
	<-e.cm.Done()
	return err
}
