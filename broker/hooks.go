package broker

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/restic-manager/restic-manager/wire"
)

// Client roles, kept per connection from authentication on.
const (
	roleAgent       = "agent"
	roleIntegration = "integration"
)

// authHook authenticates agents and integrations and confines each: an
// agent to its own subtree, an integration to reading status, health,
// alerts and discovery topics.
type authHook struct {
	mqtt.HookBase
	auth Authenticator
	log  *slog.Logger
}

func (h *authHook) ID() string { return "restic-manager-auth" }

func (h *authHook) Provides(b byte) bool {
	return b == mqtt.OnConnectAuthenticate || b == mqtt.OnACLCheck
}

// roleOf derives a client's role from its username, which authentication
// bound to it. It is not kept in memory: sessions restored from persistence
// after a restart were authenticated by an earlier process, and their
// queued commands must still pass the ACL.
func roleOf(cl *mqtt.Client) string { return userRole(string(cl.Properties.Username)) }

// userRole is the role of a username.
func userRole(user string) string {
	if strings.HasPrefix(user, wire.HostIDPrefix) {
		return roleAgent
	}
	return roleIntegration
}

func (h *authHook) OnConnectAuthenticate(cl *mqtt.Client, pk packets.Packet) bool {
	user := string(pk.Connect.Username)
	remote := cl.Net.Remote
	if !wire.ValidID(user) {
		h.log.Warn("connect refused: bad username", "remote", remote)
		return false
	}
	if !strings.HasPrefix(user, wire.HostIDPrefix) {
		return h.authIntegration(cl, pk)
	}
	// The client ID is bound to the credential: otherwise one agent could take
	// over another's persistent session and read its queued commands.
	if pk.Connect.ClientIdentifier != user {
		h.log.Warn("connect refused: client id does not match username", "host", user, "remote", remote)
		return false
	}
	if !h.auth.AuthenticateHost(user, pk.Connect.Password) {
		h.log.Warn("connect refused: bad credential", "host", user, "remote", remote)
		return false
	}
	// mochi publishes the Will without an ACL check, so check it here.
	if pk.Connect.WillFlag && pk.Connect.WillTopic != wire.StatusTopic(user) {
		h.log.Warn("connect refused: will outside the host's status topic", "host", user, "will_topic", pk.Connect.WillTopic)
		return false
	}
	return true
}

// authIntegration admits a read-only integration account. Its client ID
// may be anything that cannot be an agent's (so it never takes over an
// agent's session), and it may leave no Will.
func (h *authHook) authIntegration(cl *mqtt.Client, pk packets.Packet) bool {
	user, id := string(pk.Connect.Username), pk.Connect.ClientIdentifier
	if strings.HasPrefix(id, wire.HostIDPrefix) || id == consoleClientID || pk.Connect.WillFlag {
		h.log.Warn("connect refused: integration client id or will not allowed", "user", user, "remote", cl.Net.Remote)
		return false
	}
	if !h.auth.AuthenticateIntegration(user, pk.Connect.Password) {
		h.log.Warn("connect refused: bad integration credential", "user", user, "remote", cl.Net.Remote)
		return false
	}
	return true
}

func (h *authHook) OnACLCheck(cl *mqtt.Client, topic string, write bool) bool {
	if cl.Net.Inline {
		return true
	}
	if roleOf(cl) == roleIntegration {
		return integrationACL(topic, write)
	}
	host := string(cl.Properties.Username)
	if !wire.ValidID(host) {
		return false
	}
	if write {
		t, err := wire.ParseTopic(topic)
		return err == nil && t.Host == host && t.FromAgent()
	}
	// Reads (subscribe filters, wildcards included, and each delivery) must
	// stay under the host's own literal prefix; "+" or "#" in the host level
	// or a $share filter can never match it.
	return strings.HasPrefix(topic, wire.HostPrefix(host))
}

// homeAssistantStatus is Home Assistant's birth and last-will topic.
const homeAssistantStatus = "homeassistant/status"

// integrationACL lets an integration read host status and health, alerts
// and Home Assistant discovery, and publish only Home Assistant's birth
// message. Subscribe filters are checked level by level so that no
// wildcard can reach a command topic.
func integrationACL(topic string, write bool) bool {
	if write {
		return topic == homeAssistantStatus
	}
	if topic == "homeassistant" || strings.HasPrefix(topic, "homeassistant/") {
		return true
	}
	if strings.HasPrefix(topic, wire.Prefix+"/alerts/") {
		return true
	}
	rest, ok := strings.CutPrefix(topic, wire.Prefix+"/hosts/")
	if !ok {
		return false
	}
	host, kind, ok := strings.Cut(rest, "/")
	if !ok || (host != "+" && !wire.ValidID(host)) {
		return false
	}
	return kind == wire.KindStatus || kind == wire.KindHealth
}

// ingestHook hands agent traffic to the console before the PUBACK is sent.
type ingestHook struct {
	mqtt.HookBase
	ingest Ingestor
	log    *slog.Logger
	srv    *mqtt.Server
}

func (h *ingestHook) ID() string { return "restic-manager-ingest" }

func (h *ingestHook) Provides(b byte) bool {
	return b == mqtt.OnPublish || b == mqtt.OnWillSent
}

const ingestTimeout = 15 * time.Second

func (h *ingestHook) OnPublish(cl *mqtt.Client, pk packets.Packet) (packets.Packet, error) {
	if cl.Net.Inline {
		return pk, nil
	}
	if roleOf(cl) == roleIntegration {
		// The ACL admits only Home Assistant's birth message here.
		if pk.TopicName == homeAssistantStatus && string(pk.Payload) == "online" {
			if bl, ok := h.ingest.(BirthListener); ok {
				go bl.HomeAssistantOnline()
			}
		}
		return pk, nil
	}
	host := string(cl.Properties.Username)
	t, err := wire.ParseTopic(pk.TopicName)
	if err != nil || !t.FromAgent() {
		// The ACL lets only agent topics through; anything else is a bug.
		return pk, h.refuse(pk, packets.ErrTopicNameInvalid)
	}
	ctx, cancel := context.WithTimeout(context.Background(), ingestTimeout)
	defer cancel()
	if err := h.ingest.Ingest(ctx, host, t, pk.Payload); err != nil {
		if errors.Is(err, ErrRejected) {
			h.log.Warn("agent message rejected", "host", host, "topic", pk.TopicName, "bytes", len(pk.Payload), "error", err)
			return pk, h.refuse(pk, packets.ErrPayloadFormatInvalid)
		}
		h.log.Error("agent message not stored; the agent will resend", "host", host, "topic", pk.TopicName, "error", err)
		return pk, h.refuse(pk, packets.ErrUnspecifiedError)
	}
	if t.Kind == wire.KindSchedulesReported {
		// Agents before December 2026 retain their reports: stored above,
		// a retained copy would only cost memory and a retained-store
		// write per report (10,000 per fleet-wide policy edit).
		pk.FixedHeader.Retain = false
	}
	return pk, nil
}

// refuse picks the error mochi needs: with QoS 1 a reason code goes back in
// the PUBACK; a QoS 0 message with an error would otherwise still be
// forwarded, so it is dropped instead.
func (h *ingestHook) refuse(pk packets.Packet, code packets.Code) error {
	if pk.FixedHeader.Qos == 0 {
		return packets.ErrRejectPacket
	}
	return code
}

func (h *ingestHook) OnWillSent(cl *mqtt.Client, pk packets.Packet) {
	host := string(cl.Properties.Username)
	if !wire.ValidID(host) || pk.TopicName != wire.StatusTopic(host) {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), ingestTimeout)
	defer cancel()
	payload := bytes.Clone(pk.Payload)
	if err := h.ingest.Ingest(ctx, host, wire.Topic{Host: host, Kind: wire.KindStatus}, payload); err != nil {
		h.log.Warn("last will not stored", "host", host, "error", err)
	}
}

// expiryHook cleans up after an expired session: mochi leaves its
// subscriptions and inflight messages behind otherwise.
type expiryHook struct {
	mqtt.HookBase
	srv *mqtt.Server
}

func (h *expiryHook) ID() string { return "restic-manager-expiry" }

func (h *expiryHook) Provides(b byte) bool { return b == mqtt.OnClientExpired }

func (h *expiryHook) OnClientExpired(cl *mqtt.Client) {
	h.srv.UnsubscribeClient(cl)
	cl.ClearInflights()
}
