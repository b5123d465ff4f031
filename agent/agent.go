package agent

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync/atomic"
	"time"

	"github.com/eclipse/paho.golang/autopaho"

	"github.com/restic-manager/restic-manager/agentcmd"
	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/wire"
)

// Options configure Run.
type Options struct {
	Config  Config
	Logger  *slog.Logger
	Version string // the agent's own version, reported in its status
	// ConfigPath is the file Config came from: SIGHUP reloads its hooks
	// and sources (empty: no reload).
	ConfigPath string
}

// Agent is one running endpoint agent.
//
// Who owns what, and which lock guards it:
//   - the fields up to startedAt are set by newAgent (startedAt at the start
//     of run), before any goroutine reads them, and never change;
//   - cm is set once, before cmReady is closed (session.go);
//   - gather, the gathering window, has its own lock (intake.go);
//   - jobs, the jobs started and the jobs refused, has its own lock
//     (jobs.go), which also orders job starts against shutdown;
//   - restic, the version found, is an atomic value (execute.go).
//
// The two locks guard unrelated state changed by different goroutines (the
// window by paho's callbacks and its timer; the job table by intake, job
// goroutines and shutdown). Neither is held while the other is taken, nor
// while publishing or running restic: they cannot deadlock, and a paho
// callback waits at most for a journal read (jobTable.admit), never for a
// job to run.
type Agent struct {
	cfg       Config
	log       *slog.Logger
	version   string
	identity  string
	resticBin string       // the restic binary, named in messages
	runner    resticRunner // a *runner.Runner; the seam tests fake
	out       *outbox
	jr        *journal
	sched     *schedules.Scheduler
	desired   chan wire.SchedulesDesired
	startedAt time.Time

	cm *autopaho.ConnectionManager
	// cmReady is closed once cm is set: autopaho starts calling back (and
	// jobs can start) before NewConnection returns.
	cmReady chan struct{}

	gather gathering
	jobs   jobTable
	restic resticVersion
	// cmds is the hooks and sources of the configuration, replaced whole
	// by a reload (hooks.go).
	cmds       atomic.Pointer[agentcmd.Set]
	configPath string
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
	// Likewise the scratch data of a drill cut short.
	if err := os.RemoveAll(filepath.Join(cfg.StateDir, drillDir)); err != nil {
		return nil, fmt.Errorf("agent: clearing drill scratch data: %w", err)
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
		cfg:       cfg,
		log:       log,
		version:   opts.Version,
		identity:  identity,
		resticBin: restic,
		jr:        jr,
		out:       out,
		runner: &runner.Runner{
			Restic:   restic,
			TempDir:  filepath.Join(cfg.StateDir, "tmp"),
			CacheDir: filepath.Join(cfg.StateDir, "cache"),
			Locks:    &runner.RepoLocks{},
			Logger:   log.With("component", "runner"),
		},
		desired: make(chan wire.SchedulesDesired, 1),
		cmReady: make(chan struct{}),
		gather:  gathering{window: gatherWindow},
		jobs:    jobTable{running: map[string]context.CancelFunc{}, refused: map[string]bool{}},
	}
	set, err := agentcmd.NewSet(cfg.Hooks, cfg.Sources)
	if err != nil {
		return nil, err
	}
	a.cmds.Store(set)
	a.configPath = opts.ConfigPath
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

// run starts the session, replays the journal and serves until ctx ends;
// then it stops in the reverse order: schedules, jobs, outbox, session.
func (a *Agent) run(ctx context.Context) error {
	a.startedAt = time.Now().UTC()
	a.jobs.ctx, a.jobs.cancel = context.WithCancel(context.Background())
	defer a.jobs.cancel()

	a.probeRestic(ctx)

	connCtx, stopConn := context.WithCancel(context.Background())
	defer stopConn()
	offline, err := a.connect(connCtx)
	if err != nil {
		return err
	}
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
	reloadStop, reloadDone := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(reloadDone)
		a.watchReload(reloadStop)
	}()

	<-ctx.Done()
	a.log.Info("agent stopping")
	close(applyStop)
	<-applyDone
	close(reloadStop)
	<-reloadDone
	a.sched.Stop()
	// Stop running restic cleanly (SIGINT, lock removed); each job reports
	// "cancelled" through the outbox.
	a.jobs.stop()
	// Give the outbox a moment to drain; whatever is left goes next start.
	a.drainOutbox(5 * time.Second)
	a.sayOffline(offline)
	stopConn()
	<-senderDone
	return nil
}
