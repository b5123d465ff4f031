// Package broker embeds the mochi-mqtt MQTT 5 server: listeners,
// authentication of agents by per-host credential, the ACL that confines each
// agent to its own topic subtree, durable ingest of agent traffic before the
// PUBACK, and persistence of sessions and retained messages.
package broker

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/dgraph-io/badger/v4"
	mqtt "github.com/mochi-mqtt/server/v2"
	badgerstore "github.com/mochi-mqtt/server/v2/hooks/storage/badger"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/restic-manager/restic-manager/wire"
)

// Authenticator checks an agent's credential. Implementations compare in
// constant time against a stored hash.
type Authenticator interface {
	AuthenticateHost(hostID string, password []byte) bool
	// AuthenticateIntegration checks a read-only integration account.
	AuthenticateIntegration(user string, password []byte) bool
}

// BirthListener, when the Ingestor implements it, hears Home Assistant's
// birth message (homeassistant/status "online") so discovery configs can be
// published again.
type BirthListener interface {
	HomeAssistantOnline()
}

// ErrRejected marks an ingest failure that retrying cannot fix (malformed or
// unknown payload). Any other ingest error is treated as transient: the
// publisher gets a failure code and sends again later.
var ErrRejected = errors.New("rejected")

// Ingestor persists what agents send. It runs before the PUBACK, so a message
// the agent saw acknowledged is stored.
type Ingestor interface {
	Ingest(ctx context.Context, hostID string, t wire.Topic, payload []byte) error
}

// consoleClientID is the inline publisher. Agents cannot take it: their
// client ID must equal their host ID, and host IDs never contain a colon.
const consoleClientID = "restic-manager:console"

// Options configure a Server.
type Options struct {
	// DataDir holds the broker's own persistence (sessions, retained messages,
	// offline queues). Empty means in-memory only.
	DataDir string
	Logger  *slog.Logger
	// SessionExpiry caps how long a disconnected agent's session (and the
	// commands queued for it) is kept.
	SessionExpiry time.Duration
	// Limits bound the messages and bytes each client may send (see
	// Limits; zero fields take the defaults). Nil means no limits at all,
	// for a broker measured bare; the server always sets them.
	Limits *Limits
	// OnRateLimited, when set, hears every client disconnected for going
	// past a limit: its role ("agent" or "integration") and the limit
	// (LimitMessages or LimitBytes). The console counts them in /metrics.
	OnRateLimited func(role, limit string)
}

// Server is the embedded broker.
type Server struct {
	mq   *mqtt.Server
	log  *slog.Logger
	opts Options
	// serving is set once Serve has added the hooks and started: the
	// console is built with this Server as its publisher before it can
	// authenticate and ingest, and publishes nothing until then.
	serving atomic.Bool
	// console is an inline client of our own: mochi's built-in Publish
	// cannot set the message expiry interval that commands need.
	console *mqtt.Client
}

// New builds a broker. Add listeners, build the console with the Server as
// its publisher, then call Serve with the console's authentication and
// ingest.
func New(opts Options) (*Server, error) {
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("component", "broker")
	if opts.SessionExpiry == 0 {
		opts.SessionExpiry = 14 * 24 * time.Hour
	}

	caps := mqtt.NewDefaultServerCapabilities()
	// Retained state (status, desired schedules) must not vanish after the
	// default day; commands carry their own expiry.
	caps.MaximumMessageExpiryInterval = 0
	caps.MaximumSessionExpiryInterval = uint32(opts.SessionExpiry / time.Second)
	// Allocated per session, offline ones included: the default 8192 costs
	// ~64 KiB per agent. An agent has a handful of messages in flight.
	caps.MaximumClientWritesPending = 256
	caps.MaximumInflight = 1024
	caps.ReceiveMaximum = 256
	caps.MaximumPacketSize = wire.MaxPayload + 4<<10
	caps.MinimumProtocolVersion = 5
	if opts.Limits != nil {
		l := opts.Limits.withDefaults(float64(caps.MaximumPacketSize))
		opts.Limits = &l
	}

	mq := mqtt.New(&mqtt.Options{
		Capabilities: caps,
		InlineClient: true,
		Logger:       log.With("lib", "mochi"),
	})
	if err := slowRetainedSweep(mq, retainedSweepInterval); err != nil {
		log.Warn("mochi sweeps retained messages every second", "error", err)
	}
	s := &Server{mq: mq, log: log, opts: opts}
	s.console = mq.NewClient(nil, mqtt.LocalListener, consoleClientID, true)
	s.console.Properties.ProtocolVersion = 5
	return s, nil
}

// Serve adds the hooks (rate limits, authentication, ingest before the
// PUBACK, message expiry, persistence, in that order), restores persisted state and starts
// the listeners. It does not block.
func (s *Server) Serve(auth Authenticator, ingest Ingestor) error {
	if auth == nil || ingest == nil {
		return errors.New("broker: Auth and Ingest are required")
	}
	mq, log, opts := s.mq, s.log, s.opts
	// First: a client past its limit is cut off before its packet costs
	// anything more.
	if opts.Limits != nil {
		if err := mq.AddHook(newLimitHook(mq, *opts.Limits, log, opts.OnRateLimited), nil); err != nil {
			return fmt.Errorf("broker: limit hook: %w", err)
		}
	}
	if err := mq.AddHook(&authHook{auth: auth, log: log}, nil); err != nil {
		return fmt.Errorf("broker: auth hook: %w", err)
	}
	if err := mq.AddHook(&ingestHook{ingest: ingest, log: log, srv: mq}, nil); err != nil {
		return fmt.Errorf("broker: ingest hook: %w", err)
	}
	if err := mq.AddHook(&expiryHook{srv: mq}, nil); err != nil {
		return fmt.Errorf("broker: expiry hook: %w", err)
	}
	if opts.DataDir != "" {
		path := filepath.Join(opts.DataDir, "broker")
		bo := badger.DefaultOptions(path).
			WithLogger(nil).
			WithMemTableSize(8 << 20).
			WithValueThreshold(64 << 10).
			WithNumMemtables(2).
			WithBlockCacheSize(4 << 20).
			WithIndexCacheSize(2 << 20).
			WithValueLogFileSize(32 << 20).
			WithNumCompactors(2).
			// Not synced per write: Badger then syncs its log once per
			// transaction, serially, and every connect, subscription,
			// retained status and schedule report is a transaction here
			// (10,000 agents took minutes to connect and to ack a rollout).
			// Writes still reach the page cache at once, so a crashed or
			// killed server loses nothing; a power loss may lose the last
			// moments of broker state, which the console's store rebuilds:
			// it re-sends queued jobs and the desired schedules when an
			// agent comes online, and agents subscribe on every connect.
			WithSyncWrites(false)
		if err := mq.AddHook(&persistHook{Hook: new(badgerstore.Hook)}, &badgerstore.Options{Path: path, Options: &bo}); err != nil {
			return fmt.Errorf("broker: persistence: %w", err)
		}
	}
	if err := mq.Serve(); err != nil {
		return err
	}
	s.serving.Store(true)
	return nil
}

// persistHook is mochi's Badger persistence without the inflight records
// of inbound QoS-1 messages. mochi stores the PUBACK of every message an
// agent publishes as "inflight" before writing it and deletes it right
// after: two synced writes per agent message, serialised in the store,
// that nothing can use (a PUBACK is never resent; the agent resends its
// PUBLISH). They capped the broker at about 1,100 messages/s whatever the
// number of publishers. Outbound messages (commands to offline agents) are
// persisted as before, but a host's desired schedules (OnRetainMessage).
type persistHook struct {
	*badgerstore.Hook
	// skipped holds client/packet IDs whose inbound PUBACK was not stored,
	// so its completion (which mochi reports with the same kind of packet
	// as an outbound delivery's) deletes nothing either.
	skipped sync.Map
}

func inflightID(cl *mqtt.Client, pk packets.Packet) string {
	return cl.ID + "\x00" + strconv.Itoa(int(pk.PacketID))
}

// OnRetainMessage persists retained messages but a host's desired
// schedules: the console's store holds those and the console republishes
// every one when it starts (console.RepublishDesired). Persisting them cost
// a Badger transaction per host on every policy edit (and another two for
// each delivery's inflight record, below), about a third of the broker's
// share of a 10,000-host rollout.
func (h *persistHook) OnRetainMessage(cl *mqtt.Client, pk packets.Packet, r int64) {
	if wire.IsSchedulesDesiredTopic(pk.TopicName) {
		return
	}
	h.Hook.OnRetainMessage(cl, pk, r)
}

func (h *persistHook) OnQosPublish(cl *mqtt.Client, pk packets.Packet, sent int64, resends int) {
	id := inflightID(cl, pk)
	if pk.FixedHeader.Type == packets.Puback || wire.IsSchedulesDesiredTopic(pk.TopicName) {
		h.skipped.Store(id, struct{}{})
		return
	}
	h.skipped.Delete(id) // an outbound message now owns this packet ID
	h.Hook.OnQosPublish(cl, pk, sent, resends)
}

func (h *persistHook) OnQosComplete(cl *mqtt.Client, pk packets.Packet) {
	if _, ok := h.skipped.LoadAndDelete(inflightID(cl, pk)); ok {
		return
	}
	h.Hook.OnQosComplete(cl, pk)
}

func (h *persistHook) OnQosDropped(cl *mqtt.Client, pk packets.Packet) {
	if _, ok := h.skipped.LoadAndDelete(inflightID(cl, pk)); ok {
		return
	}
	h.Hook.OnQosDropped(cl, pk)
}

// ListenTCP adds a TCP listener (TLS when cfg is non-nil) on addr.
func (s *Server) ListenTCP(id, addr string, cfg *tls.Config) error {
	return s.mq.AddListener(listeners.NewTCP(listeners.Config{ID: id, Address: addr, TLSConfig: cfg}))
}

// ListenWebsocket adds an MQTT-over-WebSocket listener on addr.
func (s *Server) ListenWebsocket(id, addr string, cfg *tls.Config) error {
	return s.mq.AddListener(listeners.NewWebsocket(listeners.Config{ID: id, Address: addr, TLSConfig: cfg}))
}

// Close stops the listeners, disconnects clients and closes persistence.
func (s *Server) Close() error {
	return s.mq.Close()
}

// Publish sends a message from the console. Expiry, when positive, becomes
// the MQTT 5 message expiry interval so an agent that comes back later than
// that never receives it.
func (s *Server) Publish(topic string, payload []byte, retain bool, expiry time.Duration) error {
	if !s.serving.Load() {
		return errors.New("broker: not serving yet")
	}
	pk := packets.Packet{
		FixedHeader: packets.FixedHeader{Type: packets.Publish, Qos: 1, Retain: retain},
		TopicName:   topic,
		Payload:     payload,
		PacketID:    1, // the inline client never acknowledges; mochi needs a non-zero ID
	}
	if expiry > 0 {
		pk.Properties.MessageExpiryInterval = uint32((expiry + time.Second - 1) / time.Second)
	}
	return s.mq.InjectPacket(s.console, pk)
}

// Disconnect drops a client's connection (for instance when its credential
// is revoked).
func (s *Server) Disconnect(clientID string) {
	if cl, ok := s.mq.Clients.Get(clientID); ok && !cl.Closed() {
		_ = s.mq.DisconnectClient(cl, packets.ErrNotAuthorized)
	}
}

// DisconnectUser drops every connection logged in as username (for
// instance when an integration account is deleted: its clients choose their
// own IDs, so the username is what finds them).
func (s *Server) DisconnectUser(username string) {
	for _, cl := range s.mq.Clients.GetAll() {
		if !cl.Net.Inline && string(cl.Properties.Username) == username && !cl.Closed() {
			_ = s.mq.DisconnectClient(cl, packets.ErrNotAuthorized)
		}
	}
}
