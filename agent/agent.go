// Package agent is the endpoint process: its MQTT session with the broker,
// command dispatch to the restic runner, a local journal of jobs and a
// durable outbox for what the console must receive.
package agent

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"sort"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/internal/seal"
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

// sessionExpiry is how long the broker keeps this agent's session (and the
// commands queued for it) while the agent is away.
const sessionExpiry = 7 * 24 * time.Hour

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

// recover turns the journal into actions after a restart: a job that was
// running when the agent died is reported failed; a job accepted but not
// started is started now.
func (a *Agent) recover() error {
	entries, err := a.jr.all(time.Now())
	if err != nil {
		return err
	}
	// In the order the console issued them (arrival order can differ; see
	// Agent.gathered).
	sort.SliceStable(entries, func(i, j int) bool {
		if !entries[i].Command.IssuedAt.Equal(entries[j].Command.IssuedAt) {
			return entries[i].Command.IssuedAt.Before(entries[j].Command.IssuedAt)
		}
		return entries[i].ReceivedAt.Before(entries[j].ReceivedAt)
	})
	for _, e := range entries {
		switch e.State {
		case jobRunning:
			a.log.Warn("job was interrupted by an agent restart", "job_id", e.Command.JobID)
			res := wire.Result{
				JobID:     e.Command.JobID,
				Status:    wire.StatusFailed,
				ExitCode:  -1,
				StartedAt: e.StartedAt,
				EndedAt:   time.Now().UTC(),
				Error:     "the agent restarted while this job was running",
			}
			if err := a.finish(res); err != nil {
				return err
			}
		case jobReceived:
			a.start(e.Command)
		}
	}
	return nil
}

func (a *Agent) onConnectionUp(cm *autopaho.ConnectionManager, ca *paho.Connack) {
	a.log.Info("connected to broker", "session_present", ca.SessionPresent)
	a.gatherMu.Lock()
	gen := a.gatherGen
	a.gatherMu.Unlock()
	time.AfterFunc(gatherWindow, func() { a.startGathered(gen) })
	go func() {
		ctx, cancel := context.WithTimeout(a.jobsCtx, 10*time.Second)
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
	select {
	case a.out.notify <- struct{}{}:
	default:
	}
}

func (a *Agent) publishStatus(ctx context.Context, cm *autopaho.ConnectionManager) {
	hostname, _ := os.Hostname()
	a.mu.Lock()
	running := make([]string, 0, len(a.running))
	for id := range a.running {
		running = append(running, id)
	}
	resticVersion := a.restic
	a.mu.Unlock()
	sort.Strings(running)
	b, err := wire.Encode(&wire.Status{
		Online: true, AgentVersion: a.version, OS: runtime.GOOS, Arch: runtime.GOARCH,
		Hostname: hostname, ResticVersion: resticVersion, StartedAt: a.startedAt, RunningJobs: running,
	})
	if err != nil {
		a.log.Error("encode status", "error", err)
		return
	}
	if _, err := cm.Publish(ctx, &paho.Publish{Topic: wire.StatusTopic(a.cfg.HostID), Payload: b, QoS: 1, Retain: true}); err != nil {
		a.log.Warn("publish status failed", "error", err)
	}
}

// onPublish runs in paho's receive loop, one message at a time, and the PUBACK
// goes out when it returns: so it records the command durably and hands it
// off, never running it here.
func (a *Agent) onPublish(pr paho.PublishReceived) (bool, error) {
	p := pr.Packet
	if p.Topic == wire.SchedulesDesiredTopic(a.cfg.HostID) {
		d, err := wire.DecodeSchedulesDesired(p.Payload)
		if err != nil {
			a.log.Warn("malformed desired schedules dropped", "error", err)
			return true, nil
		}
		a.offerDesired(d)
		return true, nil
	}
	if p.Topic != wire.CommandsTopic(a.cfg.HostID) {
		a.log.Warn("message on an unexpected topic ignored", "topic", p.Topic)
		return true, nil
	}
	cmd, err := wire.DecodeCommand(p.Payload)
	if err != nil {
		// Acknowledged and dropped: redelivery could never fix it.
		a.log.Warn("malformed command dropped", "error", err, "bytes", len(p.Payload))
		return true, nil
	}
	if cmd.Kind == wire.JobCancel {
		a.cancel(cmd.JobID)
		return true, nil
	}
	a.mu.Lock()
	refused := a.refused[cmd.JobID]
	a.mu.Unlock()
	if refused {
		a.log.Info("duplicate command ignored", "job_id", cmd.JobID)
		return true, nil
	}
	fresh, err := a.jr.accept(cmd, time.Now().UTC())
	if err != nil {
		// paho acknowledges the command whatever happens, and nothing would
		// send it again: report the job failed (through the outbox, which
		// keeps it in memory when the disk is full), and never run a later
		// copy of it.
		a.log.Error("cannot journal command; the job is reported failed", "job_id", cmd.JobID, "error", err)
		a.mu.Lock()
		a.refused[cmd.JobID] = true
		a.mu.Unlock()
		res := failed(cmd.JobID, time.Time{}, "the agent could not record the command in its state directory: "+err.Error())
		if b, err := wire.Encode(&res); err == nil {
			_ = a.out.Put(wire.ResultTopic(a.cfg.HostID, res.JobID), b, false)
		}
		return true, nil
	}
	if !fresh {
		a.log.Info("duplicate command ignored", "job_id", cmd.JobID)
		return true, nil
	}
	if !a.gather(cmd) {
		a.start(cmd)
	}
	return true, nil
}

// gatherWindow is how long after a connection is up commands are gathered
// before they start (see Agent.gathered).
const gatherWindow = 750 * time.Millisecond

// gather keeps cmd for startGathered when it arrived inside the window.
func (a *Agent) gather(cmd wire.Command) bool {
	a.gatherMu.Lock()
	defer a.gatherMu.Unlock()
	if !a.gatherOpen {
		return false
	}
	a.gathered = append(a.gathered, cmd)
	return true
}

// startGathered starts the gathered commands oldest first. Journaled as
// received, they are not lost if the agent stops first: recover starts
// them on the next run.
func (a *Agent) startGathered(gen uint64) {
	a.gatherMu.Lock()
	if gen != a.gatherGen {
		// A later connection attempt owns the window (and these commands).
		a.gatherMu.Unlock()
		return
	}
	cmds := a.gathered
	a.gathered = nil
	a.gatherOpen = false
	a.gatherMu.Unlock()
	sort.SliceStable(cmds, func(i, j int) bool { return cmds[i].IssuedAt.Before(cmds[j].IssuedAt) })
	for _, cmd := range cmds {
		a.start(cmd)
	}
}

// takeGathered removes a gathered command (to start it for a cancel).
func (a *Agent) takeGathered(jobID string) (wire.Command, bool) {
	a.gatherMu.Lock()
	defer a.gatherMu.Unlock()
	for i, c := range a.gathered {
		if c.JobID == jobID {
			a.gathered = append(a.gathered[:i], a.gathered[i+1:]...)
			return c, true
		}
	}
	return wire.Command{}, false
}

func (a *Agent) cancel(jobID string) {
	if cmd, ok := a.takeGathered(jobID); ok {
		// Started now only to be cancelled: it ends "cancelled" the usual way.
		a.start(cmd)
	}
	a.mu.Lock()
	cancel, ok := a.running[jobID]
	a.mu.Unlock()
	if ok {
		a.log.Info("cancelling job", "job_id", jobID)
		cancel()
		return
	}
	// Not here yet (or already done): leave a tombstone so that a command
	// delivered after its cancel is never run.
	now := time.Now().UTC()
	if fresh, err := a.jr.accept(wire.Command{JobID: jobID, Kind: wire.JobCancel, IssuedAt: now}, now); err == nil && fresh {
		_ = a.jr.setState(jobID, jobDone, now)
		a.log.Info("job cancelled before it arrived", "job_id", jobID)
	}
}

// start runs a job in its own goroutine, owned by the agent's WaitGroup.
func (a *Agent) start(cmd wire.Command) {
	ctx, cancel := context.WithCancel(a.jobsCtx)
	a.mu.Lock()
	if _, dup := a.running[cmd.JobID]; dup || a.jobsCtx.Err() != nil {
		a.mu.Unlock()
		cancel()
		return
	}
	// Only a job still "received" starts: recovery after a restart and the
	// gathering window may both hold one that already ran.
	if e, ok, err := a.jr.get(cmd.JobID); err != nil || !ok || e.State != jobReceived {
		a.mu.Unlock()
		cancel()
		return
	}
	a.running[cmd.JobID] = cancel
	// Added under a.mu: shutdown cancels jobsCtx under a.mu before it
	// waits, so no job is added to a WaitGroup being waited on.
	a.wg.Add(1)
	a.mu.Unlock()
	// The job's place in its repository's queue is taken now, in arrival
	// order: the goroutines below start in any order, and jobs for one
	// repository must run in the order they came.
	var rv *runner.Reservation
	if cmd.Kind != wire.JobHealth && cmd.Kind != wire.JobIndex {
		if spec, err := a.buildSpec(cmd); err == nil {
			rv = a.runner.Reserve(spec)
		}
	}
	go func() {
		defer a.wg.Done()
		defer rv.Release() // a job that ends before its turn gives it up
		defer func() {
			a.mu.Lock()
			delete(a.running, cmd.JobID)
			a.mu.Unlock()
			cancel()
		}()
		res := a.execute(ctx, cmd, rv)
		if err := a.finish(res); err != nil {
			a.log.Error("cannot queue job result", "job_id", cmd.JobID, "error", err)
		}
	}()
}

// finish queues the result durably, then marks the job done.
func (a *Agent) finish(res wire.Result) error {
	b, err := wire.Encode(&res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := a.out.Put(wire.ResultTopic(a.cfg.HostID, res.JobID), b, false); err != nil {
		return err
	}
	if err := a.jr.setState(res.JobID, jobDone, time.Now().UTC()); err != nil {
		// Left "received" (a full disk), the next start would run a job
		// already reported: forget it instead (a removal needs no space),
		// and ignore copies of it while this process lives.
		a.mu.Lock()
		a.refused[res.JobID] = true
		a.mu.Unlock()
		if rerr := a.jr.remove(res.JobID); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	return nil
}

func failed(jobID string, started time.Time, msg string) wire.Result {
	return wire.Result{JobID: jobID, Status: wire.StatusFailed, ExitCode: -1, StartedAt: started, EndedAt: time.Now().UTC(), Error: msg}
}

func (a *Agent) execute(ctx context.Context, cmd wire.Command, rv *runner.Reservation) wire.Result {
	log := a.log.With("job_id", cmd.JobID, "kind", cmd.Kind)
	if !cmd.ExpiresAt.IsZero() && time.Now().After(cmd.ExpiresAt) {
		log.Warn("command expired before it could run", "expires_at", cmd.ExpiresAt)
		return wire.Result{JobID: cmd.JobID, Status: wire.StatusExpired, ExitCode: -1, EndedAt: time.Now().UTC(),
			Error: fmt.Sprintf("the command expired at %s before the agent could run it", cmd.ExpiresAt.Format(time.RFC3339))}
	}
	if err := a.resticUsable(); err != nil {
		log.Warn("job refused", "error", err)
		return failed(cmd.JobID, time.Time{}, err.Error())
	}
	spec, err := a.buildSpec(cmd)
	if err != nil {
		log.Warn("job refused", "error", err)
		return failed(cmd.JobID, time.Time{}, err.Error())
	}
	// A job is journaled running only once it holds its repository's lock
	// (runOp's OnLocked): one still waiting behind another when the agent
	// dies never touched the repository, and runs after the restart.
	markRunning := func() error {
		if err := a.jr.setState(cmd.JobID, jobRunning, time.Now().UTC()); err != nil {
			return fmt.Errorf("the agent could not record the job as running: %w", err)
		}
		log.Info("job starting")
		return nil
	}
	if cmd.Kind == wire.JobHealth || cmd.Kind == wire.JobIndex {
		if err := markRunning(); err != nil {
			return failed(cmd.JobID, time.Time{}, err.Error())
		}
	}
	pump := newProgressPump(a, cmd.JobID)
	defer pump.close()
	log.Debug("job accepted; waiting for its turn on the repository")
	var r runner.Result
	switch cmd.Kind {
	case wire.JobHealth:
		r = a.runHealth(ctx, spec, pump)
	case wire.JobIndex:
		r = a.runIndex(ctx, cmd.JobID, spec, pump)
	default:
		spec.Reservation = rv
		r = a.runOp(ctx, spec, pump, markRunning)
	}
	if ctx.Err() != nil && a.jobsCtx.Err() != nil && r.Status == wire.StatusCancelled {
		r.Error = "the agent was stopped while this job was running"
	}
	log.Info("job finished", "status", r.Status, "exit_code", r.ExitCode, "snapshot_id", r.SnapshotID)
	return wire.Result{
		JobID: cmd.JobID, Status: r.Status, ExitCode: r.ExitCode,
		StartedAt: r.StartedAt.UTC(), EndedAt: r.EndedAt.UTC(), SnapshotID: r.SnapshotID,
		Summary: r.Summary, Output: r.Output, Error: r.Error, StderrTail: r.StderrTail, Waited: r.Waited,
	}
}

// minRestic is the oldest restic the runner parses (Debian 12 ships 0.14).
const minRestic = "0.14.0"

// resticUsable refuses jobs, with a reason an operator can act on, when
// restic was not found or is too old. It looks again each time, so
// installing restic fixes it without restarting the agent.
func (a *Agent) resticUsable() error {
	a.mu.Lock()
	v := a.restic
	a.mu.Unlock()
	if v == "" {
		ctx, cancel := context.WithTimeout(a.jobsCtx, 30*time.Second)
		defer cancel()
		found, err := a.runner.Version(ctx)
		if err != nil {
			return fmt.Errorf("restic is not usable on this host (%s): %w; install restic %s or newer, or set --restic / RM_RESTIC", a.runner.Restic, err, minRestic)
		}
		// Only the reported version changes: the runner, found without a
		// version at start, keeps assuming the newest restic.
		a.mu.Lock()
		a.restic, v = found, found
		a.mu.Unlock()
	}
	if !runner.VersionAtLeast(v, minRestic) {
		return fmt.Errorf("restic %s on this host is older than %s, the oldest restic-manager supports", v, minRestic)
	}
	return nil
}

// runOp runs one restic operation, forwarding its progress.
func (a *Agent) runOp(ctx context.Context, spec runner.Spec, pump *progressPump, onLocked func() error) runner.Result {
	return a.runner.Run(ctx, spec, runner.Hooks{
		OnLocked: onLocked,
		OnStart:  func(at time.Time) { pump.started(at) },
		OnProgress: func(p runner.Progress) {
			pump.send(wire.Progress{
				Percent:   clampPercent(p.Percent), // the runner reports 0–100
				BytesDone: p.BytesDone, BytesTotal: p.TotalBytes,
				FilesDone: p.FilesDone, FilesTotal: p.TotalFiles,
				CurrentFiles: p.CurrentFiles, ETASeconds: p.SecondsRemaining,
			})
		},
	})
}

func clampPercent(p float64) float64 {
	if p < 0 || p != p {
		return 0
	}
	if p > 100 {
		return 100
	}
	return p
}

// buildSpec opens the sealed repository and decodes the kind's arguments.
func (a *Agent) buildSpec(cmd wire.Command) (runner.Spec, error) {
	plain, err := seal.Open(a.identity, cmd.SealedRepo)
	if err != nil {
		return runner.Spec{}, fmt.Errorf("cannot open the repository secrets sealed for this agent: %w", err)
	}
	var repo wire.RepoSpec
	if err := json.Unmarshal(plain, &repo); err != nil {
		return runner.Spec{}, fmt.Errorf("repository secrets: %w", err)
	}
	spec := runner.Spec{
		Kind:    cmd.Kind,
		Repo:    runner.Repo{URL: repo.URL, Password: repo.Password, Env: repo.Env},
		Timeout: time.Duration(cmd.TimeoutS) * time.Second,
	}
	if err := decodeArgs(cmd.Kind, cmd.Args, &spec); err != nil {
		return spec, err
	}
	return spec, nil
}

// sendOutbox delivers queued messages in order, each only after the previous
// one was acknowledged.
func (a *Agent) sendOutbox(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for {
		m, ok, err := a.out.Peek()
		if err != nil {
			a.log.Error("outbox", "error", err)
		}
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-a.out.notify:
				continue
			}
		}
		if err := a.cm.AwaitConnection(ctx); err != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		pr, err := a.cm.Publish(pctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: 1, Retain: m.Retain})
		cancel()
		switch {
		case err == nil:
			_ = a.out.Remove(m)
			backoff = 500 * time.Millisecond
			continue
		case pr != nil && permanentReason(pr.ReasonCode):
			a.log.Error("console refused a queued message; dropping it", "topic", m.Topic, "reason_code", pr.ReasonCode)
			_ = a.out.Remove(m)
			continue
		}
		a.log.Warn("queued message not delivered yet", "topic", m.Topic, "error", err)
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// permanentReason: PUBACK codes that resending cannot change.
func permanentReason(code byte) bool {
	switch code {
	case 0x87, 0x90, 0x99: // not authorized, topic name invalid, payload format invalid
		return true
	}
	return false
}

// progressPump publishes a job's progress without ever blocking restic's
// output: only the newest report waits, older ones are replaced.
type progressPump struct {
	a      *Agent
	jobID  string
	latest chan wire.Progress
	done   chan struct{}
	seq    int64
}

func newProgressPump(a *Agent, jobID string) *progressPump {
	p := &progressPump{a: a, jobID: jobID, latest: make(chan wire.Progress, 1), done: make(chan struct{})}
	go p.loop()
	return p
}

func (p *progressPump) started(at time.Time) {
	p.send(wire.Progress{StartedAt: at.UTC()})
}

func (p *progressPump) send(pr wire.Progress) {
	for {
		select {
		case p.latest <- pr:
			return
		default:
		}
		// Replace the waiting report, but never lose the start marker.
		select {
		case old := <-p.latest:
			if !old.StartedAt.IsZero() && pr.StartedAt.IsZero() {
				pr.StartedAt = old.StartedAt
			}
		default:
		}
	}
}

func (p *progressPump) close() {
	close(p.latest)
	<-p.done
}

func (p *progressPump) loop() {
	defer close(p.done)
	<-p.a.cmReady
	for pr := range p.latest {
		p.seq++
		pr.JobID, pr.Seq = p.jobID, p.seq
		b, err := wire.Encode(&pr)
		if err != nil {
			p.a.log.Error("encode progress", "error", err)
			continue
		}
		ctx, cancel := context.WithTimeout(p.a.jobsCtx, 5*time.Second)
		_, err = p.a.cm.Publish(ctx, &paho.Publish{Topic: wire.ProgressTopic(p.a.cfg.HostID, p.jobID), Payload: b, QoS: 1})
		cancel()
		if err != nil && !errors.Is(err, autopaho.ConnectionDownError) {
			p.a.log.Debug("progress not delivered", "error", err)
		}
	}
}
