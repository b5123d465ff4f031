package agent

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync/atomic"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// resticRunner is what the agent asks of the restic CLI wrapper: the seam
// where tests put a fake restic.
type resticRunner interface {
	Run(ctx context.Context, spec runner.Spec, h runner.Hooks) runner.Result
	// Reserve takes a job's place in its repository's queue (nil when the
	// job does not queue); Run with spec.Reservation set waits for it.
	Reserve(spec runner.Spec) *runner.Reservation
	Version(ctx context.Context) (string, error)
	LsStream(ctx context.Context, repo runner.Repo, snapshotID string, fn func(runner.Node) error) error
}

var _ resticRunner = (*runner.Runner)(nil)

// resticVersion is the restic version found, "" while restic is missing.
// Status publishes and jobs read it and a job that finds restic installed
// after the start writes it: an atomic value, so that it needs no lock.
type resticVersion struct{ v atomic.Pointer[string] }

func (r *resticVersion) get() string {
	if p := r.v.Load(); p != nil {
		return *p
	}
	return ""
}

func (r *resticVersion) set(v string) { r.v.Store(&v) }

// probeRestic looks for restic at the start; while it is missing, each job
// looks again (resticUsable).
func (a *Agent) probeRestic(ctx context.Context) {
	v, err := a.runner.Version(ctx)
	if err != nil {
		a.log.Warn("restic not usable; jobs will fail until it is installed", "restic", a.resticBin, "error", err)
		return
	}
	a.restic.set(v)
	// The runner picks restic's flags by its version (a fake has none).
	if r, ok := a.runner.(*runner.Runner); ok {
		r.ResticVersion = v
	}
}

// execute runs one started job to its result: refused (expired, no usable
// restic, bad arguments), or run through the runner, which journals it
// running once it holds its repository's lock.
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
	var jh *jobHooks
	if err == nil && cmd.Kind == wire.JobBackup {
		jh, err = a.planBackup(cmd, &spec)
	}
	if err == nil && cmd.Kind == wire.JobRestore {
		err = a.planRestore(cmd, &spec)
	}
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
		if jh != nil {
			// Hooks run once the job holds its repository: a database is
			// not frozen while the job waits behind another.
			return jh.before(ctx)
		}
		return nil
	}
	if cmd.Kind == wire.JobHealth || cmd.Kind == wire.JobIndex || cmd.Kind == wire.JobDrill {
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
	case wire.JobDrill:
		r = a.runDrill(ctx, cmd, spec, pump)
	case wire.JobDump:
		r = a.runDump(ctx, cmd, spec, pump, markRunning)
	default:
		spec.Reservation = rv
		r = a.runOp(ctx, spec, pump, markRunning)
	}
	if ctx.Err() != nil && a.jobs.stopping() && r.Status == wire.StatusCancelled {
		r.Error = "the agent was stopped while this job was running"
	}
	var hookRuns []wire.HookRun
	if jh != nil {
		jh.after(ctx, r)
		hookRuns = jh.runs
		r.EndedAt = time.Now()
	}
	log.Info("job finished", "status", r.Status, "exit_code", r.ExitCode, "snapshot_id", r.SnapshotID)
	return wire.Result{
		JobID: cmd.JobID, Status: r.Status, ExitCode: r.ExitCode,
		StartedAt: r.StartedAt.UTC(), EndedAt: r.EndedAt.UTC(), SnapshotID: r.SnapshotID,
		Summary: r.Summary, Output: r.Output, Error: r.Error, StderrTail: r.StderrTail, Waited: r.Waited, Hooks: hookRuns,
	}
}

// openRepo opens a repository sealed to this agent (a command's
// SealedRepo or SealedToRepo).
func (a *Agent) openRepo(sealed string) (runner.Repo, error) {
	plain, err := seal.Open(a.identity, sealed)
	if err != nil {
		return runner.Repo{}, fmt.Errorf("cannot open the repository secrets sealed for this agent: %w", err)
	}
	var repo wire.RepoSpec
	if err := json.Unmarshal(plain, &repo); err != nil {
		return runner.Repo{}, fmt.Errorf("repository secrets: %w", err)
	}
	// Only a restic backend's variables reach restic, whatever the console
	// sent: LD_PRELOAD or PATH would run code as this agent's user.
	if err := wire.CheckRepoEnv(repo.Env); err != nil {
		return runner.Repo{}, fmt.Errorf("repository: %w", err)
	}
	return runner.Repo{URL: repo.URL, Password: repo.Password, Env: repo.Env}, nil
}

// minRestic is the oldest restic the runner parses (Debian 12 ships 0.14).
const minRestic = "0.14.0"

// resticUsable refuses jobs, with a reason an operator can act on, when
// restic was not found or is too old. It looks again each time, so
// installing restic fixes it without restarting the agent.
func (a *Agent) resticUsable() error {
	v := a.restic.get()
	if v == "" {
		ctx, cancel := context.WithTimeout(a.jobs.ctx, 30*time.Second)
		defer cancel()
		found, err := a.runner.Version(ctx)
		if err != nil {
			return fmt.Errorf("restic is not usable on this host (%s): %w; install restic %s or newer, or set --restic / RM_RESTIC", a.resticBin, err, minRestic)
		}
		// Only the reported version changes: the runner, found without a
		// version at start, keeps assuming the newest restic.
		a.restic.set(found)
		v = found
	}
	if !runner.VersionAtLeast(v, minRestic) {
		return fmt.Errorf("restic %s on this host is older than %s, the oldest restic-manager supports", v, minRestic)
	}
	return nil
}

// runOp runs one restic operation, forwarding its progress.
func (a *Agent) runOp(ctx context.Context, spec runner.Spec, pump *progressPump, onLocked func() error) runner.Result {
	return a.runner.Run(ctx, spec, runner.Hooks{
		OnLocked:   onLocked,
		OnStart:    func(at time.Time) { pump.started(at) },
		OnProgress: func(p runner.Progress) { pump.send(progressOf(p)) },
	})
}

// buildSpec opens the sealed repository (and a copy's destination) and
// decodes the kind's arguments.
func (a *Agent) buildSpec(cmd wire.Command) (runner.Spec, error) {
	repo, err := a.openRepo(cmd.SealedRepo)
	if err != nil {
		return runner.Spec{}, err
	}
	spec := runner.Spec{
		Kind:    cmd.Kind,
		Repo:    repo,
		Timeout: time.Duration(cmd.TimeoutS) * time.Second,
	}
	if err := decodeArgs(cmd.Kind, cmd.Args, &spec); err != nil {
		return spec, err
	}
	if cmd.Kind == wire.JobCopy {
		if cmd.SealedToRepo == "" {
			return spec, errors.New("the copy command carries no destination repository")
		}
		if spec.Copy.To, err = a.openRepo(cmd.SealedToRepo); err != nil {
			return spec, fmt.Errorf("the copy's destination: %w", err)
		}
	}
	if cmd.Kind == wire.JobRotateKey {
		// The same repository with the new password: nothing else may
		// differ, or the agent would hand the new key to another server.
		if cmd.SealedToRepo == "" {
			return spec, errors.New("the key rotation carries no new password")
		}
		to, err := a.openRepo(cmd.SealedToRepo)
		if err != nil {
			return spec, fmt.Errorf("the key rotation's new password: %w", err)
		}
		if to.URL != repo.URL {
			return spec, errors.New("the key rotation names another repository for the new password")
		}
		spec.RotateKey.NewPassword = to.Password
	}
	if cmd.Kind == wire.JobInit && cmd.SealedFromRepo == "" && strings.Contains(string(cmd.Args), "copy_chunker_params_from") {
		return spec, errors.New("the init names a repository to copy chunker parameters from but the command carries none")
	}
	if cmd.Kind == wire.JobInit && cmd.SealedFromRepo != "" {
		from, err := a.openRepo(cmd.SealedFromRepo)
		if err != nil {
			return spec, fmt.Errorf("the repository to copy chunker parameters from: %w", err)
		}
		spec.Init.ChunkerFrom = &from
	}
	// The console guards every forget until an admin approved it: preview,
	// and hold rather than delete too much or keep forged snapshots.
	if g := cmd.Guard; cmd.Kind == wire.JobForget && g != nil && !cmd.Approved {
		spec.Forget.Guard = &runner.ForgetGuard{MaxRemovePercent: g.MaxRemovePercent, NotAfter: g.NotAfter}
	}
	return spec, nil
}
