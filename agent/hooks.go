package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/restic-manager/restic-manager/agentcmd"
	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// afterHookCap bounds an after or on-failure hook of a job that was
// cancelled or whose agent is stopping: it still runs (a database frozen
// by its before hook must be thawed), but a service stop must not wait
// for a whole default timeout.
const afterHookCap = time.Minute

// commands is the agent's hooks and sources, replaced whole on a reload.
func (a *Agent) commands() *agentcmd.Set { return a.cmds.Load() }

// watchReload reloads the hooks and sources on SIGHUP: a bad file is
// logged and the running definitions stay. The status, which names them,
// is published again.
func (a *Agent) watchReload(stop <-chan struct{}) {
	if a.configPath == "" {
		return
	}
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-stop:
			return
		case <-hup:
			a.reloadCommands()
		}
	}
}

func (a *Agent) reloadCommands() {
	cfg, err := LoadConfig(a.configPath)
	if err != nil {
		a.log.Error("reload refused; the earlier hooks and sources stay", "config", a.configPath, "error", err)
		return
	}
	set, _ := agentcmd.NewSet(cfg.Hooks, cfg.Sources) // validated by LoadConfig
	a.cmds.Store(set)
	a.log.Info("hooks and sources reloaded", "hooks", set.HookNames(), "sources", set.SourceNames())
	select {
	case <-a.cmReady:
		ctx, cancel := context.WithTimeout(a.jobs.ctx, 10*time.Second)
		defer cancel()
		a.publishStatus(ctx, a.cm)
	default:
	}
}

// jobHooks runs the hooks a backup names, in order, and records each run
// for the job's result.
type jobHooks struct {
	a     *Agent
	cmd   wire.Command
	names []string
	hooks []agentcmd.Hook
	// began[i]: hook i's before phase started (or it has none), so its
	// after phase runs: a freeze that failed halfway still gets its thaw.
	began []bool
	runs  []wire.HookRun
}

// planBackup resolves a backup's hook and source names against this
// agent's configuration, filling the runner's sources and limits. A name
// the agent lacks refuses the job before anything runs.
func (a *Agent) planBackup(cmd wire.Command, spec *runner.Spec) (*jobHooks, error) {
	var args wire.BackupArgs
	if err := json.Unmarshal(cmd.Args, &args); err != nil {
		return nil, err
	}
	set := a.commands()
	jh := &jobHooks{a: a, cmd: cmd}
	for _, n := range args.Hooks {
		h, err := set.Hook(n)
		if err != nil {
			return nil, err
		}
		jh.names, jh.hooks = append(jh.names, n), append(jh.hooks, h)
	}
	jh.began = make([]bool, len(jh.hooks))
	for _, n := range args.Sources {
		s, err := set.Source(n)
		if err != nil {
			return nil, err
		}
		spec.Backup.Sources = append(spec.Backup.Sources, runner.Source{Name: n, Filename: s.File(n), Cmd: s.Dump(n)})
	}
	spec.LimitUploadKiB, spec.LimitDownloadKiB = args.LimitUploadKiB, args.LimitDownloadKiB
	return jh, nil
}

// planRestore points a restore with to_source at that source's restore
// command: the dump file is the one include given, else the source's
// file at the snapshot's root.
func (a *Agent) planRestore(cmd wire.Command, spec *runner.Spec) error {
	var args wire.RestoreArgs
	if err := json.Unmarshal(cmd.Args, &args); err != nil || args.ToSource == "" {
		return err
	}
	src, err := a.commands().Source(args.ToSource)
	if err != nil {
		return err
	}
	if len(src.Restore) == 0 {
		return fmt.Errorf("source %q has no restore command in this agent's configuration", args.ToSource)
	}
	rs := src.RestoreSpec(args.ToSource)
	spec.Restore.ToCommand = &rs
	spec.Restore.File = "/" + src.File(args.ToSource)
	if len(args.Include) == 1 {
		spec.Restore.File = args.Include[0]
	}
	return nil
}

// env is what every hook sees of the job.
func (jh *jobHooks) env(phase string) map[string]string {
	return map[string]string{
		"RM_JOB_ID": jh.cmd.JobID, "RM_JOB_KIND": jh.cmd.Kind, "RM_HOST_ID": jh.a.cfg.HostID, "RM_HOOK_PHASE": phase,
	}
}

// before runs the before phases in order; the first failure stops them
// and fails the job (restic never starts).
func (jh *jobHooks) before(ctx context.Context) error {
	for i, h := range jh.hooks {
		jh.began[i] = true
		spec := h.Phase(jh.names[i], wire.HookBefore)
		if len(spec.Argv) == 0 {
			continue
		}
		run := jh.run(ctx, spec, wire.HookBefore, jh.env(wire.HookBefore))
		if !run.OK() {
			msg := fmt.Sprintf("before hook %s failed (%s), restic was not started", run.Name, describe(run))
			if run.OutputTail != "" {
				msg += ": " + lastLine(run.OutputTail)
			}
			return hookError{msg}
		}
	}
	return nil
}

// after runs, once the job has its result, the on-failure phases (when it
// failed) and the after phases, with the outcome in their environment.
// Their failures are reported, and do not change the job's status: the
// backup is what it is.
func (jh *jobHooks) after(ctx context.Context, r runner.Result) {
	if len(jh.hooks) == 0 {
		return
	}
	if ctx.Err() != nil || jh.a.jobs.stopping() {
		ctx = context.WithoutCancel(ctx)
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, afterHookCap)
		defer cancel()
	} else {
		ctx = context.WithoutCancel(ctx) // cancel after restic ended does not skip a thaw
	}
	phases := []string{wire.HookAfter}
	if r.Status == wire.StatusFailed || r.Status == wire.StatusCancelled {
		phases = []string{wire.HookOnFailure, wire.HookAfter}
	}
	for _, phase := range phases {
		for i, h := range jh.hooks {
			spec := h.Phase(jh.names[i], phase)
			if len(spec.Argv) == 0 || phase == wire.HookAfter && !jh.began[i] {
				continue
			}
			env := jh.env(phase)
			env["RM_JOB_STATUS"], env["RM_SNAPSHOT_ID"], env["RM_EXIT_CODE"] = r.Status, r.SnapshotID, fmt.Sprint(r.ExitCode)
			env["RM_ERROR"] = r.Error
			jh.run(ctx, spec, phase, env)
		}
	}
}

func (jh *jobHooks) run(ctx context.Context, spec agentcmd.Spec, phase string, env map[string]string) wire.HookRun {
	o := agentcmd.Run(ctx, spec, env)
	run := wire.HookRun{Name: spec.Name, Phase: phase, ExitCode: o.ExitCode, DurationMS: o.Duration.Milliseconds(), OutputTail: o.Tail}
	if o.Err != nil {
		run.Error = o.Err.Error()
		if len(run.Error) > wire.MaxHookTail {
			run.Error = run.Error[:wire.MaxHookTail]
		}
	}
	level := jh.a.log.Info
	if !run.OK() {
		level = jh.a.log.Warn
	}
	level("hook ran", "job_id", jh.cmd.JobID, "hook", run.Name, "phase", phase, "exit_code", run.ExitCode, "error", run.Error, "duration_ms", run.DurationMS)
	jh.runs = append(jh.runs, run)
	return run
}

// hookError is a before hook's failure, told apart from the agent's own
// errors in OnLocked.
type hookError struct{ msg string }

func (e hookError) Error() string { return e.msg }

func describe(r wire.HookRun) string {
	if r.Error != "" {
		return r.Error
	}
	return fmt.Sprintf("exit code %d", r.ExitCode)
}

// lastLine is the last non-empty line of a hook's output.
func lastLine(s string) string {
	end := len(s)
	for end > 0 && (s[end-1] == '\n' || s[end-1] == '\r' || s[end-1] == ' ') {
		end--
	}
	start := end
	for start > 0 && s[start-1] != '\n' {
		start--
	}
	return s[start:end]
}
