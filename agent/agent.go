// Package agent is the endpoint process: its MQTT session with the broker,
// command dispatch to the restic runner, a local journal of jobs and a
// durable outbox for what the console must receive.
package agent

import (
	"context"
	"crypto/tls"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/internal/tlsutil"
	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/wire"
)

// Options configure Run.
type Options struct {
	Config  Config
	Logger  *slog.Logger
	Version string // the agent's own version, reported in its status
}

// Agent is one running endpoint agent.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	version   string
	identity  string
	runner    *runner.Runner
	out       *outbox
	jr        *journal
	startedAt time.Time
	restic    string // version found, "" when restic is missing

	cm *autopaho.ConnectionManager
	// cmReady is closed once cm is set: autopaho starts calling back (and
	// jobs can start) before NewConnection returns.
	cmReady chan struct{}

	jobsCtx    context.Context // parent of every job; cancelled on shutdown
	cancelJobs context.CancelFunc
	wg         sync.WaitGroup

	mu      sync.Mutex
	running map[string]context.CancelFunc
	refused map[string]bool // commands reported failed because they could not be journaled

	// Commands that arrive right after a (re)connection are the broker's
	// queue for this session, which a broker need not hand over in order
	// (mochi 2.7.9 sorts it by send second, unstably): they are gathered
	// for gatherWindow and started in the order the console issued them.
	gatherMu   sync.Mutex
	gatherOpen bool   // from each connection attempt until its window ends
	gatherGen  uint64 // connection attempts; a stale window timer does nothing
	gathered   []wire.Command

	sched   *schedules.Scheduler
	desired chan wire.SchedulesDesired
}

// Run runs the agent until ctx is cancelled.
func Run(ctx context.Context, opts Options) error {
	a, err := newAgent(opts)
	if err != nil {
		return err
	}
	return a.run(ctx)
}

func newAgent(opts Options) (*Agent, error) {
	cfg := opts.Config
	log := opts.Logger
	if log == nil {
		log = slog.Default()
	}
	log = log.With("host_id", cfg.HostID)
	if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
		return nil, fmt.Errorf("agent: state dir: %w", err)
	}
	// Secret files of a run cut short by a crash would otherwise stay behind.
	if err := os.RemoveAll(filepath.Join(cfg.StateDir, "tmp")); err != nil {
		return nil, fmt.Errorf("agent: clearing temporary secrets: %w", err)
	}
	identity, err := loadIdentity(cfg.StateDir)
	if err != nil {
		return nil, err
	}
	jr, err := openJournal(filepath.Join(cfg.StateDir, "jobs"))
	if err != nil {
		return nil, err
	}
	out, err := openOutbox(filepath.Join(cfg.StateDir, "outbox"))
	if err != nil {
		return nil, err
	}
	restic := cfg.Restic
	if restic == "" {
		restic = os.Getenv("RM_RESTIC")
	}
	if restic == "" {
		restic = "restic"
	}
	a := &Agent{
		cfg:      cfg,
		log:      log,
		version:  opts.Version,
		identity: identity,
		jr:       jr,
		out:      out,
		runner: &runner.Runner{
			Restic:   restic,
			TempDir:  filepath.Join(cfg.StateDir, "tmp"),
			CacheDir: filepath.Join(cfg.StateDir, "cache"),
			Locks:    &runner.RepoLocks{},
			Logger:   log.With("component", "runner"),
		},
		running: map[string]context.CancelFunc{},
		refused: map[string]bool{},
		desired: make(chan wire.SchedulesDesired, 1),
		cmReady: make(chan struct{}),
	}
	fl, err := openFireLog(filepath.Join(cfg.StateDir, "fires.json"))
	if err != nil {
		return nil, err
	}
	a.sched = schedules.NewScheduler(cfg.HostID, schedules.RealClock{}, scheduleSink{a}, fl, log)
	return a, nil
}

// identityFile holds the agent's age X25519 private key, made at enrolment.
const identityFile = "agent.key"

func loadIdentity(stateDir string) (string, error) {
	b, err := os.ReadFile(filepath.Join(stateDir, identityFile))
	if err != nil {
		return "", fmt.Errorf("agent: key (run enroll first): %w", err)
	}
	return string(trimSpace(b)), nil
}

func trimSpace(b []byte) []byte {
	for len(b) > 0 && (b[len(b)-1] == '\n' || b[len(b)-1] == '\r' || b[len(b)-1] == ' ') {
		b = b[:len(b)-1]
	}
	return b
}

func (a *Agent) run(ctx context.Context) error {
	a.startedAt = time.Now().UTC()
	a.jobsCtx, a.cancelJobs = context.WithCancel(context.Background())
	defer a.cancelJobs()

	if v, err := a.runner.Version(ctx); err != nil {
		a.log.Warn("restic not usable; jobs will fail until it is installed", "restic", a.runner.Restic, "error", err)
	} else {
		a.restic = v
		a.runner.ResticVersion = v
	}

	u, err := url.Parse(a.cfg.BrokerURL)
	if err != nil {
		return fmt.Errorf("agent: broker_url: %w", err)
	}
	offline, err := wire.Encode(&wire.Status{Online: false, AgentVersion: a.version, OS: runtime.GOOS, Arch: runtime.GOARCH})
	if err != nil {
		return err
	}
	connCtx, stopConn := context.WithCancel(context.Background())
	defer stopConn()
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
			a.gatherMu.Lock()
			a.gatherOpen = true
			a.gatherGen++
			a.gatherMu.Unlock()
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
		return fmt.Errorf("agent: connect: %w", err)
	}
	a.cm = cm
	close(a.cmReady)
	if err := a.recover(); err != nil {
		stopConn()
		return err
	}

	senderDone := make(chan struct{})
	go func() {
		defer close(senderDone)
		a.sendOutbox(connCtx)
	}()
	applyStop, applyDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(applyDone)
		a.applyLoop(applyStop)
	}()

	<-ctx.Done()
	a.log.Info("agent stopping")
	close(applyStop)
	<-applyDone
	a.sched.Stop()
	// Stop running restic cleanly (SIGINT, lock removed); each job reports
	// "cancelled" through the outbox.
	a.mu.Lock() // see start: no job is added once this returns
	a.cancelJobs()
	a.mu.Unlock()
	a.wg.Wait()
	// Give the outbox a moment to drain; whatever is left goes next start.
	drainCtx, cancelDrain := context.WithTimeout(context.Background(), 5*time.Second)
	for a.out.Len() > 0 && drainCtx.Err() == nil {
		select {
		case <-drainCtx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
	cancelDrain()
	// A normal DISCONNECT cancels the Will, so say "offline" ourselves.
	pubCtx, cancelPub := context.WithTimeout(context.Background(), 3*time.Second)
	_, _ = cm.Publish(pubCtx, &paho.Publish{Topic: wire.StatusTopic(a.cfg.HostID), Payload: offline, QoS: 1, Retain: true})
	_ = cm.Disconnect(pubCtx)
	cancelPub()
	stopConn()
	<-senderDone
	return nil
}
