package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"sync"
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
	ctx  context.Context
	log  *slog.Logger
	opts ExternalOptions

	ingest Ingestor
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
	e.ctx, e.ingest = ctx, ingest
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
	e.log.Info("connected to the external broker", "session_present", ca.SessionPresent)
}

// received ingests one message and acknowledges it once stored. Handlers
// run one at a time in arrival order, which keeps acknowledgements in the
// order MQTT requires.
func (e *External) received(pr paho.PublishReceived) (bool, error) {
	pk := pr.Packet
	ack := func() {
		if err := pr.Client.Ack(pk); err != nil {
			e.log.Warn("acknowledgement not sent; the broker will deliver again", "topic", pk.Topic, "error", err)
		}
	}
	if pk.Topic == homeAssistantStatus {
		if string(pk.Payload) == "online" {
			if bl, ok := e.ingest.(BirthListener); ok {
				go bl.HomeAssistantOnline()
			}
		}
		ack()
		return true, nil
	}
	t, err := wire.ParseTopic(pk.Topic)
	if err != nil || !t.FromAgent() {
		e.log.Warn("message on an unexpected topic dropped", "topic", pk.Topic)
		ack()
		return true, nil
	}
	// The broker's ACL (generated from the console's records, see
	// WriteMosquittoAuth) lets an agent publish only under its own host ID,
	// so the topic names the sender.
	for attempt := 0; ; attempt++ {
		ctx, cancel := context.WithTimeout(context.Background(), ingestTimeout)
		err = e.ingest.Ingest(ctx, t.Host, t, pk.Payload)
		cancel()
		switch {
		case err == nil:
			ack()
			return true, nil
		case errors.Is(err, ErrRejected):
			e.log.Warn("agent message rejected", "host", t.Host, "topic", pk.Topic, "bytes", len(pk.Payload), "error", err)
			ack()
			return true, nil
		}
		// Not stored: never acknowledge it. Acknowledgements go out in
		// order, so skipping this one would hold back every later one too;
		// retry until the store recovers or the console stops (the broker
		// then sends it again on the next session).
		if attempt%10 == 0 {
			e.log.Error("agent message not stored; retrying before acknowledging", "host", t.Host, "topic", pk.Topic, "attempt", attempt+1, "error", err)
		}
		select {
		case <-e.ctx.Done():
			return false, err
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
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	err := e.cm.Disconnect(ctx)
	<-e.cm.Done()
	return err
}
