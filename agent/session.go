package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/url"
	"os"
	"runtime"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/internal/tlsutil"
	"github.com/restic-manager/restic-manager/wire"
)

// sessionExpiry is how long the broker keeps this agent's session (and the
// commands queued for it) while the agent is away.
const sessionExpiry = 7 * 24 * time.Hour

// connect starts the MQTT session, which autopaho keeps up (reconnecting
// with backoff) until connCtx ends, and sets a.cm. It returns the "offline"
// status the Will carries, for shutdown to publish itself.
func (a *Agent) connect(connCtx context.Context) (offline []byte, err error) {
	u, err := url.Parse(a.cfg.BrokerURL)
	if err != nil {
		return nil, fmt.Errorf("agent: broker_url: %w", err)
	}
	offline, err = wire.Encode(&wire.Status{Online: false, AgentVersion: a.version, OS: runtime.GOOS, Arch: runtime.GOARCH})
	if err != nil {
		return nil, err
	}
	var tlsCfg *tls.Config
	switch u.Scheme {
	case "mqtts", "ssl", "tls", "mqtt+ssl", "tcps", "wss":
		tlsCfg = tlsutil.ClientConfig(a.cfg.CAFingerprint, u.Hostname())
	}
	cc := autopaho.ClientConfig{
		ServerUrls:                    []*url.URL{u},
		TlsCfg:                        tlsCfg,
		KeepAlive:                     30,
		CleanStartOnInitialConnection: false,
		SessionExpiryInterval:         uint32(sessionExpiry / time.Second),
		ReconnectBackoff:              autopaho.NewExponentialBackoff(250*time.Millisecond, 30*time.Second, time.Second, 2),
		ConnectTimeout:                10 * time.Second,
		ConnectUsername:               a.cfg.Username,
		// The broker sends the session's queue right after CONNACK, before
		// OnConnectionUp runs: the gathering window opens before each attempt.
		ConnectPacketBuilder: func(pc *paho.Connect, _ *url.URL) (*paho.Connect, error) {
			a.gather.begin()
			return pc, nil
		},
		ConnectPassword: []byte(a.cfg.Password),
		WillMessage:     &paho.WillMessage{Topic: wire.StatusTopic(a.cfg.HostID), Payload: offline, QoS: 1, Retain: true},
		OnConnectionUp:  a.onConnectionUp,
		OnConnectionDown: func() bool {
			a.sched.SetOnline(false)
			return true
		},
		OnConnectError: func(err error) {
			a.log.Warn("broker connection failed", "broker", u.Redacted(), "error", err)
		},
		ClientConfig: paho.ClientConfig{
			ClientID:          a.cfg.HostID,
			OnPublishReceived: []func(paho.PublishReceived) (bool, error){a.onPublish},
			OnClientError: func(err error) {
				a.log.Warn("broker connection lost", "error", err)
			},
		},
	}
	cm, err := autopaho.NewConnection(connCtx, cc)
	if err != nil {
		return nil, fmt.Errorf("agent: connect: %w", err)
	}
	a.cm = cm
	close(a.cmReady)
	return offline, nil
}

// onConnectionUp runs in autopaho's connection loop: it schedules the end
// of the gathering window and hands the subscription and the status, which
// wait for the broker, to a goroutine bounded by a timeout.
func (a *Agent) onConnectionUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	a.log.Info("connected to broker", "session_present", ca.SessionPresent)
	a.endGatheringLater()
	go func() {
		ctx, cancel := context.WithTimeout(a.jobs.ctx, 10*time.Second)
		defer cancel()
		if _, err := cm.Subscribe(ctx, &paho.Subscribe{Subscriptions: []paho.SubscribeOptions{
			{Topic: wire.CommandsTopic(a.cfg.HostID), QoS: 1},
			{Topic: wire.SchedulesDesiredTopic(a.cfg.HostID), QoS: 1},
		}}); err != nil {
			a.log.Warn("subscribe failed", "error", err)
		}
		a.publishStatus(ctx, cm)
		a.sched.SetOnline(true)
	}()
	a.kickSender()
}

// publishStatus publishes the retained "online" status with the jobs this
// process has started.
func (a *Agent) publishStatus(ctx context.Context, cm *autopaho.ConnectionManager) {
	hostname, _ := os.Hostname()
	b, err := wire.Encode(&wire.Status{
		Online: true, AgentVersion: a.version, OS: runtime.GOOS, Arch: runtime.GOARCH,
		Hostname: hostname, ResticVersion: a.restic.get(), StartedAt: a.startedAt, RunningJobs: a.jobs.ids(), SentAt: time.Now().UTC(),
		Hooks: a.commands().HookNames(), Sources: a.commands().SourceNames(), RestoreSources: a.commands().RestoreNames(),
	})
	if err != nil {
		a.log.Error("encode status", "error", err)
		return
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: wire.StatusTopic(a.cfg.HostID), Payload: b, QoS: 1, Retain: true}); err != nil {
		a.log.Warn("publish status failed", "error", err)
	}
}

// sayOffline publishes the "offline" status and disconnects: a normal
// DISCONNECT cancels the Will, so the agent says it itself.
func (a *Agent) sayOffline(offline []byte) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	_, _ = a.cm.Publish(ctx, &paho.Publish{Topic: wire.StatusTopic(a.cfg.HostID), Payload: offline, QoS: 1, Retain: true})
	_ = a.cm.Disconnect(ctx)
}
