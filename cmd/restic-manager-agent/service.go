package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/kardianos/service"

	"github.com/restic-manager/restic-manager/agent"
	"github.com/restic-manager/restic-manager/internal/cli"
)

// serviceName names the systemd unit (restic-manager-agent.service) and the
// Windows service.
const serviceName = "restic-manager-agent"

// stopTimeout bounds how long a stop waits for the agent: it cancels
// running restic (SIGINT, then a kill), drains its outbox for up to 5 s and
// says goodbye to the broker. It stays below systemd's TimeoutStopSec (90 s
// in the unit) so that the agent, not SIGKILL, ends the run.
const stopTimeout = 80 * time.Second

const serviceUsage = `Usage: restic-manager-agent service ACTION [--config FILE]

Actions:
  install    register the agent with the service manager (systemd on Linux,
             the SCM on Windows), started at boot and restarted on failure;
             the config must exist already (run enroll first)
  uninstall  stop and unregister it
  start, stop, restart
  status     print running, stopped or not installed; exit status 0, 3 or 4
  unit       print the systemd unit that install writes (Linux)
`

// runService implements "restic-manager-agent service ...".
func runService(args []string) error {
	if len(args) == 0 || strings.HasPrefix(args[0], "-") {
		fmt.Fprint(os.Stderr, serviceUsage)
		return errors.New("service: missing action")
	}
	action := args[0]
	fs := flag.NewFlagSet("service "+action, flag.ContinueOnError)
	config := fs.String("config", defaultConfig(), "the agent's config file")
	if err := fs.Parse(args[1:]); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return fmt.Errorf("service %s: unexpected argument %q", action, fs.Arg(0))
	}
	configPath, err := filepath.Abs(*config)
	if err != nil {
		return err
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	if action == "unit" {
		unit, err := systemdUnit(exe, configPath)
		if err != nil {
			return err
		}
		fmt.Print(unit)
		return nil
	}
	svcCfg, err := serviceConfig(exe, configPath, nil)
	if err != nil {
		return err
	}
	s, err := service.New(newProgram(configPath, ""), svcCfg)
	if err != nil {
		return fmt.Errorf("service: %w", err)
	}
	switch action {
	case "install":
		// A service that cannot load its config would only crash-loop.
		cfg, err := agent.LoadConfig(configPath)
		if err != nil {
			return fmt.Errorf("service install: %w", err)
		}
		if err := os.MkdirAll(cfg.StateDir, 0o700); err != nil {
			return fmt.Errorf("service install: %w", err)
		}
		// The credential, the private key and restic's temporary secret
		// files are for the service account alone (on Windows this sets the
		// ACLs that file modes cannot express).
		for _, p := range []string{configPath, cfg.StateDir} {
			if err := agent.RestrictPath(p); err != nil {
				return fmt.Errorf("service install: %w", err)
			}
		}
		if err := s.Install(); err != nil {
			return fmt.Errorf("service install: %w", err)
		}
		fmt.Printf("installed service %s (%s) running %s run --config %s\n", serviceName, s.Platform(), exe, configPath)
		if runtime.GOOS == "linux" && strings.Contains(s.Platform(), "systemd") {
			fmt.Printf("unit: /etc/systemd/system/%s.service; logs: journalctl -u %s and %s\n",
				serviceName, serviceName, filepath.Join(cfg.StateDir, agent.LogFileName))
		}
		return nil
	case "uninstall":
		// Unregistering does not stop a running service everywhere
		// (systemd keeps it running), so stop it first; it may not be
		// running, which is fine.
		_ = s.Stop()
		if err := s.Uninstall(); err != nil {
			return fmt.Errorf("service uninstall: %w", err)
		}
		fmt.Printf("uninstalled service %s\n", serviceName)
		return nil
	case "start":
		return wrapAction(action, s.Start())
	case "stop":
		return wrapAction(action, s.Stop())
	case "restart":
		return wrapAction(action, s.Restart())
	case "status":
		st, err := s.Status()
		switch {
		case errors.Is(err, service.ErrNotInstalled):
			fmt.Println("not installed")
			os.Exit(4)
		case err != nil:
			return fmt.Errorf("service status: %w", err)
		case st == service.StatusRunning:
			fmt.Println("running")
			return nil
		case st == service.StatusStopped:
			fmt.Println("stopped")
			os.Exit(3)
		}
		return fmt.Errorf("service status: unknown (%d)", st)
	default:
		fmt.Fprint(os.Stderr, serviceUsage)
		return fmt.Errorf("service: unknown action %q", action)
	}
}

func wrapAction(action string, err error) error {
	if err != nil {
		return fmt.Errorf("service %s: %w", action, err)
	}
	return nil
}

// executable is this binary's absolute path: what the service manager runs.
func executable() (string, error) {
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("service: locating this binary: %w", err)
	}
	return filepath.Abs(exe)
}

// serviceConfig describes the agent's service to kardianos/service. runWait,
// when set, is what Run waits on between Start and Stop on POSIX systems.
func serviceConfig(exe, configPath string, runWait func()) (*service.Config, error) {
	c := &service.Config{
		Name:        serviceName,
		DisplayName: "restic-manager agent",
		Description: "Runs restic backups, restores and maintenance for a restic-manager console.",
		Executable:  exe,
		Arguments:   []string{"run", "--config", configPath},
		Option: service.KeyValue{
			// systemd (also written into our own unit below) and the other
			// POSIX init systems kardianos supports.
			"Restart": "on-failure",
			// Windows: the SCM restarts the service 10 s after its process
			// dies, however often, counting failures afresh after a day.
			"OnFailure":              "restart",
			"OnFailureDelayDuration": "10s",
			"OnFailureResetPeriod":   24 * 60 * 60,
			// Windows: start after the boot-critical services, when the
			// network is more likely up (the agent retries anyway).
			"DelayedAutoStart": true,
		},
	}
	if runtime.GOOS == "linux" {
		// Our own, fully rendered unit instead of kardianos's template:
		// ordering after the network, restart only on failure, and a stop
		// that lets the agent cancel restic itself. The same text is
		// printed by "service unit" and kept in deploy/systemd/.
		unit, err := systemdUnit(exe, configPath)
		if err != nil {
			return nil, err
		}
		c.Option["SystemdScript"] = unit
	}
	if runWait != nil {
		c.Option["RunWait"] = runWait
	}
	return c, nil
}

// systemdUnitTemplate is the agent's unit; @EXECSTART@ is replaced by the
// escaped command line. kardianos renders SystemdScript with its template
// engine, so the text must contain no "{{" (systemdUnit checks).
const systemdUnitTemplate = `# restic-manager agent. Written by "restic-manager-agent service install";
# "restic-manager-agent service unit" prints it.
[Unit]
Description=restic-manager agent
Documentation=https://github.com/restic-manager/restic-manager
Wants=network-online.target
After=network-online.target
# Never give up restarting: the agent only exits on a real failure.
StartLimitIntervalSec=0

[Service]
Type=simple
ExecStart=@EXECSTART@
Restart=on-failure
RestartSec=10
# SIGTERM to the agent alone: it stops restic itself (SIGINT, so restic
# removes its lock) and reports the job cancelled. Whatever is left gets
# SIGKILL after TimeoutStopSec.
KillMode=mixed
TimeoutStopSec=90
# The agent runs as root to read everything it backs up and to restore
# owners and modes, so the file system stays writable and visible; these
# only take away what backup and restore never need.
NoNewPrivileges=yes
LockPersonality=yes
RestrictRealtime=yes
ProtectClock=yes
ProtectHostname=yes
ProtectKernelLogs=yes

[Install]
WantedBy=multi-user.target
`

// systemdUnit renders the unit for this binary and config file.
func systemdUnit(exe, configPath string) (string, error) {
	for _, p := range []string{exe, configPath} {
		if !filepath.IsAbs(p) {
			return "", fmt.Errorf("service: %q is not an absolute path", p)
		}
	}
	args := []string{exe, "run", "--config", configPath}
	quoted := make([]string, len(args))
	for i, a := range args {
		q, err := systemdQuote(a, i == 0)
		if err != nil {
			return "", err
		}
		quoted[i] = q
	}
	unit := strings.Replace(systemdUnitTemplate, "@EXECSTART@", strings.Join(quoted, " "), 1)
	if strings.Contains(unit, "{{") || strings.Contains(unit, "}}") {
		return "", fmt.Errorf("service: paths may not contain {{ or }}: %q, %q", exe, configPath)
	}
	return unit, nil
}

// systemdQuote makes one ExecStart word that systemd reads back as s:
// plain words stay as they are; others are double-quoted with C escapes.
// '%' (specifiers) is expanded by systemd even inside quotes, so it is
// doubled; so is '$' (environment variables), except in the executable's
// own name, which systemd does not expand (and where it refuses quotes and
// backslashes, checked with systemd-analyze 252).
func systemdQuote(s string, executable bool) (string, error) {
	if s == "" {
		return `""`, nil
	}
	plain := true
	for _, r := range s {
		switch {
		case r < 0x20 || r == 0x7f:
			return "", fmt.Errorf("service: control character in %q", s)
		case executable && (r == '"' || r == '\'' || r == '\\'):
			return "", fmt.Errorf("service: systemd cannot run a program whose path contains %q: %s", r, s)
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', strings.ContainsRune("/._-+,:=@", r):
		default:
			plain = false
		}
	}
	esc := strings.ReplaceAll(s, "%", "%%")
	if !executable {
		esc = strings.ReplaceAll(esc, "$", "$$")
	}
	if plain {
		return esc, nil
	}
	esc = strings.NewReplacer(`\`, `\\`, `"`, `\"`).Replace(esc)
	return `"` + esc + `"`, nil
}

// ---- running under the service manager (or in the foreground)

// program is the agent as a kardianos/service program: Start loads the
// config, opens the log and starts the agent; Stop cancels it and waits.
type program struct {
	configPath string
	restic     string // --restic override, "" for the config's

	events service.Logger // the Windows event log under the SCM; else nil

	cancel   context.CancelFunc
	done     chan struct{} // closed when agent.Run has returned
	err      error         // agent.Run's result; read only after done
	stopping atomic.Bool
	log      *slog.Logger
	logFile  *agent.LogFile
}

func newProgram(configPath, restic string) *program {
	return &program{configPath: configPath, restic: restic, done: make(chan struct{})}
}

// Start must not block: it starts the agent and returns.
func (p *program) Start(service.Service) error {
	cfg, err := agent.LoadConfig(p.configPath)
	if err != nil {
		return err
	}
	if p.restic != "" {
		cfg.Restic = p.restic
	}
	p.log = p.openLog(cfg.StateDir)
	p.log.Info("agent starting", "config", p.configPath, "service_manager", service.Platform(),
		"interactive", service.Interactive(), "version", cli.Version)
	p.info(fmt.Sprintf("restic-manager agent %s starting for host %s", cli.Version, cfg.HostID))

	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	go func() {
		err := agent.Run(ctx, agent.Options{Config: cfg, Logger: p.log, Version: cli.Version, ConfigPath: p.configPath})
		failed := !p.stopping.Load()
		if failed {
			if err == nil {
				err = errors.New("the agent stopped by itself")
			}
			// Said before done is closed: after it, runAgent may return
			// and close the log file.
			p.log.Error("agent failed", "error", err)
			p.error(fmt.Sprintf("restic-manager agent failed: %v", err))
		}
		p.err = err
		close(p.done)
		if failed && runtime.GOOS == "windows" {
			// The SCM's recovery action (restart, set at install) applies
			// when the process dies; Windows has no RunWait to wake.
			p.closeLog()
			os.Exit(1)
		}
		// Elsewhere the RunWait function sees done, Run returns and
		// runAgent exits 1, which systemd's Restart=on-failure restarts.
	}()
	return nil
}

// Stop cancels the agent and waits for the shutdown it owes the console
// (restic stopped, results queued, "offline" said): normally a few
// seconds, at most stopTimeout.
func (p *program) Stop(service.Service) error {
	select {
	case <-p.done:
		return nil // it ended by itself, and Start's goroutine said why
	default:
	}
	p.stopping.Store(true)
	if p.cancel != nil {
		p.cancel()
	}
	select {
	case <-p.done:
	case <-time.After(stopTimeout):
		err := fmt.Errorf("the agent did not stop within %s", stopTimeout)
		p.log.Error("stop", "error", err)
		p.error(err.Error())
		return err
	}
	if p.err != nil {
		p.log.Error("agent stopped with an error", "error", p.err)
		p.error(fmt.Sprintf("restic-manager agent stopped with an error: %v", p.err))
	} else {
		p.log.Info("agent stopped")
		p.info("restic-manager agent stopped")
	}
	return nil
}

// openLog logs to stderr (the journal under systemd) and to a size-rotated
// file in the state directory, at the level RM_LOG_LEVEL sets.
func (p *program) openLog(stateDir string) *slog.Logger {
	base := cli.Logger()
	var w io.Writer = os.Stderr
	lf, err := agent.OpenLogFile(filepath.Join(stateDir, agent.LogFileName), agent.DefaultLogFileMax)
	if err != nil {
		base.Warn("logging to stderr only", "error", err)
	} else {
		p.logFile = lf
		w = agent.TeeWriter{os.Stderr, lf}
	}
	l := slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: levelOf(base)}))
	slog.SetDefault(l)
	return l
}

func (p *program) closeLog() {
	if p.logFile != nil {
		_ = p.logFile.Close()
	}
}

// levelOf finds the lowest level a logger is enabled for, so that the file
// log follows RM_LOG_LEVEL exactly as cli.Logger reads it.
func levelOf(l *slog.Logger) slog.Level {
	for _, lv := range []slog.Level{slog.LevelDebug, slog.LevelInfo, slog.LevelWarn} {
		if l.Enabled(context.Background(), lv) {
			return lv
		}
	}
	return slog.LevelError
}

func (p *program) info(msg string) {
	if p.events != nil {
		_ = p.events.Info(msg)
	}
}

func (p *program) error(msg string) {
	if p.events != nil {
		_ = p.events.Error(msg)
	}
}

// runUnderService runs the agent through kardianos/service: under systemd
// or the Windows SCM it is the service's main loop; in a terminal it runs in
// the foreground until SIGINT or SIGTERM. Either way Start and Stop are the
// same code, so a foreground run tests what the service does.
func runUnderService(configPath, restic string) error {
	configPath, err := filepath.Abs(configPath)
	if err != nil {
		return err
	}
	p := newProgram(configPath, restic)
	defer p.closeLog()
	// Registered before Start so that a SIGTERM arriving while the agent
	// starts is not the default, immediate death.
	sigCtx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	wait := func() {
		select {
		case <-sigCtx.Done():
		case <-p.done: // the agent failed by itself
		}
	}
	exe, err := executable()
	if err != nil {
		return err
	}
	svcCfg, err := serviceConfig(exe, configPath, wait)
	if err != nil {
		return err
	}
	s, err := service.New(p, svcCfg)
	if err != nil {
		// No service system kardianos knows of: the plain foreground loop.
		if err := p.Start(nil); err != nil {
			return err
		}
		wait()
		if err := p.Stop(nil); err != nil {
			return err
		}
		return p.err
	}
	if runtime.GOOS == "windows" && !service.Interactive() {
		// Under the SCM stderr goes nowhere: start, stop and failures also
		// go to the Windows event log (source registered at install).
		if l, err := s.Logger(nil); err == nil {
			p.events = l
		}
	}
	if err := s.Run(); err != nil {
		p.error(fmt.Sprintf("restic-manager agent: %v", err))
		return err
	}
	// Run returned after Stop, which waited for the agent: its result is
	// the exit status (nil after a requested stop).
	<-p.done
	return p.err
}
