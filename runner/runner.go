// Package runner runs the restic CLI for the agent: it builds argv (never a
// shell), hands secrets to restic through private files, parses restic's
// --json output while it streams, throttles progress, maps exit codes to a
// Result, cancels restic gracefully and serialises runs per repository.
//
// Layout: runner.go (types, Run), exec.go (the process core shared by every
// operation), output.go (JSON-lines parsing), outcome.go (exit codes and
// error text), secrets.go (secret files, environment, redaction), locks.go
// (RepoLocks), version.go, and one op_*.go file per restic subcommand
// (op.go has the table and the helpers they share). runner_unix.go and
// runner_windows.go hold the platform process code.
//
// Supported restic versions: 0.14.0 (Debian 12) to 0.18.x. Where their
// output differs (see the op_*.go files) the runner parses every variant;
// Runner.ResticVersion selects flags that older versions lack.
package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"slices"
	"time"

	"github.com/restic-manager/restic-manager/agentcmd"
	"github.com/restic-manager/restic-manager/wire"
)

// Operation kinds (Spec.Kind): the job kinds of wire's table that are one
// restic subcommand (health and index are the agent's compositions of them).
const (
	KindInit      = wire.JobInit
	KindBackup    = wire.JobBackup
	KindForget    = wire.JobForget
	KindPrune     = wire.JobPrune
	KindCheck     = wire.JobCheck
	KindUnlock    = wire.JobUnlock
	KindSnapshots = wire.JobSnapshots
	KindStats     = wire.JobStats
	KindDiff      = wire.JobDiff
	KindRestore   = wire.JobRestore
	KindLs        = wire.JobLs
	KindLocks     = wire.JobLocks
	KindCopy      = wire.JobCopy
	KindDump      = wire.JobDump
)

// Result statuses: wire's vocabulary (a run never ends expired; that is the
// console's or the agent's verdict on a command that came too late).
const (
	StatusSucceeded = wire.StatusSucceeded
	StatusPartial   = wire.StatusPartial
	StatusFailed    = wire.StatusFailed
	StatusCancelled = wire.StatusCancelled
	// StatusHeld: a guarded forget stopped after its preview (ForgetGuard).
	StatusHeld = wire.StatusHeld
)

// Defaults for the Runner's zero-valued fields.
const (
	DefaultGrace            = 30 * time.Second
	DefaultProgressInterval = 500 * time.Millisecond
	DefaultRetryLock        = 5 * time.Minute
)

// Result causes: why a run failed, when restic said so, by its exit code
// (0.17+) or, for older versions, by its error text.
const (
	CauseNoRepository  = "no_repository"  // exit code 10
	CauseLocked        = "locked"         // exit code 11
	CauseWrongPassword = "wrong_password" // exit code 12
)

// Repo is a repository and its secrets. URL and Password never reach restic's
// argv or environment, and are never logged.
type Repo struct {
	URL      string
	Password string
	// Env holds backend credentials (AWS_*, B2_*, …), passed to restic as
	// environment variables for now (see buildEnv).
	Env map[string]string
}

// BackupArgs are the arguments of a backup.
type BackupArgs struct {
	Paths, Excludes, Tags []string
	Hostname              string   // restic's --host; empty: restic uses the OS host name
	ExcludeFiles          []string // files of exclude patterns (--exclude-file), on the agent's host
	OneFileSystem         bool     // --one-file-system
	ExcludeCaches         bool     // --exclude-caches (directories with a CACHEDIR.TAG)
	UseFSSnapshot         bool     // --use-fs-snapshot (VSS): Windows only, refused elsewhere
	// Sources are backed up after Paths, one snapshot each, under the same
	// repository lock (op_backup_source.go). Paths may then be empty.
	Sources []Source
}

// Source is a source of the agent's configuration: the dump command whose
// standard output restic backs up as one file.
type Source struct {
	Name     string
	Filename string
	Cmd      agentcmd.Spec
}

// Spec describes one run of restic. Only the arguments of Kind are used.
type Spec struct {
	Kind string // one of the Kind constants
	// Repo is the repository the run is about: a copy's source.
	Repo      Repo
	Init      InitArgs
	Backup    BackupArgs
	Forget    ForgetArgs
	Prune     PruneArgs
	Check     CheckArgs
	Unlock    UnlockArgs
	Snapshots SnapshotsArgs
	Stats     StatsArgs
	Diff      DiffArgs
	Restore   RestoreArgs
	Ls        LsArgs
	Copy      CopyArgs
	RotateKey RotateKeyArgs
	Dump      DumpArgs
	// Timeout bounds the whole run, including the wait for the repository
	// lock. 0 means none. Past it the run is cancelled like a cancel and ends
	// "failed" with the error "timed out after ...".
	Timeout time.Duration
	// Reservation, when set (from Runner.Reserve), is this run's place in
	// its repository's queue, taken when the job arrived; without it the
	// run queues when it reaches the lock.
	Reservation *Reservation
	// LimitUploadKiB and LimitDownloadKiB cap restic's bandwidth in KiB/s
	// (--limit-upload, --limit-download; 0: none).
	LimitUploadKiB, LimitDownloadKiB int

	// proc adjusts the one restic process of a source run (unexported:
	// set by the backup's runAll only).
	proc procExtras
}

// repos are the repositories of a run: its own, and a copy's destination
// or an init's chunker source. Their secrets are redacted.
func (s *Spec) repos() []Repo {
	repos := []Repo{s.Repo}
	switch {
	case s.Kind == KindCopy:
		repos = append(repos, s.Copy.To)
	case s.Kind == KindInit && s.Init.ChunkerFrom != nil:
		repos = append(repos, *s.Init.ChunkerFrom)
	case s.Kind == KindRotateKey:
		repos = append(repos, Repo{Password: s.RotateKey.NewPassword})
	}
	return repos
}

// commandEnvs are the environments of the agent's commands a run starts
// (a source's dump, a restore command), as repositories for the redactor:
// their values (PGPASSWORD, MYSQL_PWD) must not reach the job's error or
// stderr tail when a dump prints its environment.
func (s *Spec) commandEnvs() []Repo {
	var envs []Repo
	for _, src := range s.Backup.Sources {
		envs = append(envs, Repo{Env: src.Cmd.Env})
	}
	if c := s.Restore.ToCommand; c != nil {
		envs = append(envs, Repo{Env: c.Env})
	}
	return envs
}

// procExtras are what a source run changes in restic's process.
type procExtras struct {
	env       map[string]string // the source's environment (--stdin-from-command runs it as restic's child)
	dir       string
	stdin     *os.File  // the read end of the dump's pipe (--stdin)
	stdout    io.Writer // restic dump's bytes: a restore command's pipe, or a download's upload (op_dump.go)
	killGroup bool      // kill restic's process group when it ends: the dump's children go with it
}

// Progress is one of restic's status messages, throttled.
type Progress struct {
	Percent                          float64 // 0–100 (restic's percent_done × 100)
	SecondsElapsed, SecondsRemaining float64
	TotalFiles, FilesDone            uint64
	TotalBytes, BytesDone            uint64
	CurrentFiles                     []string
	ErrorCount                       uint64
}

// Result is the outcome of a run.
type Result struct {
	Status   string // StatusSucceeded, StatusPartial, StatusFailed or StatusCancelled
	ExitCode int    // restic's exit code; -1 when restic never started; 128+n when killed by signal n (Unix)
	// StartedAt is when restic started (zero when it never did); EndedAt is
	// when the run ended.
	StartedAt, EndedAt time.Time
	Summary            json.RawMessage // restic's own summary object, verbatim
	SnapshotID         string          // from the backup summary (8 hex with restic 0.14, else 64)
	// Output is the structured result of the operation: see the *Output
	// types (init: {"id","repository"}). Some operations fill it on
	// failure too (check finding errors).
	Output json.RawMessage
	Error  string // short human explanation when not succeeded
	// Cause is CauseNoRepository, CauseLocked or CauseWrongPassword when a
	// failure was one of those, else empty.
	Cause      string
	StderrTail string // last ~4 KiB of stderr and non-JSON stdout lines, secrets redacted
	Waited     bool   // the run waited for another run on the same repository (Runner.Locks)
}

// Hooks are callbacks of one run. They are called synchronously: a slow hook
// slows restic down (OnProgress runs on the goroutine reading restic's
// stdout). They must not panic.
type Hooks struct {
	// OnLocked, if set, is called once the run holds its repository's lock
	// (or needs none), right before restic starts: the last moment the run
	// has not touched the repository. An error ends the run failed, with
	// restic never started.
	OnLocked func() error
	// OnProcess, if set, is called with restic's process ID right after it
	// started, before OnStart.
	OnProcess func(pid int)
	// OnStart, if set, is called right after restic has started (after the
	// repository lock was acquired). No OnProgress call comes before it returns.
	OnStart func(startedAt time.Time)
	// OnProgress, if set, receives restic's status, at most about one per
	// Runner.ProgressInterval, plus the last status before the summary if it
	// was held back. Calls never overlap. restic sends status lines on a
	// ticker only: a short backup may report none.
	OnProgress func(Progress)
}

// Runner runs restic. Its zero value is not usable: Restic must be set. A
// Runner may be used by several goroutines at once.
type Runner struct {
	Restic   string // path to the restic binary
	TempDir  string // where secret files are written; must be private (0700), created if missing; empty: a private directory per run under os.TempDir()
	CacheDir string // passed as --cache-dir when set
	// Grace is how long restic gets to exit after SIGINT before it is killed
	// (default DefaultGrace).
	Grace time.Duration
	// ProgressInterval is the minimum interval between OnProgress calls
	// (default DefaultProgressInterval; 10% slack for restic's jitter).
	// restic is asked for 2 status lines a second, or 1/ProgressInterval
	// when that is more, up to 10.
	ProgressInterval time.Duration
	Logger           *slog.Logger // nil: no logging
	// Locks, if set, serialises runs per repository (keyed by a hash of the
	// URL). nil: no serialisation. The locks probe (KindLocks, ListLocks)
	// does not take it: it reads without locking.
	Locks *RepoLocks
	// ResticVersion is the version of Restic ("0.18.1", from Version); it
	// selects flags older versions lack. Empty: assume the newest. A value
	// that is not a version makes every run fail.
	ResticVersion string
	// RetryLock is how long the exclusive operations (check, forget,
	// prune) wait for a repository lock held by another restic (restic's
	// --retry-lock, 0.16+; older restic fails at once). 0: DefaultRetryLock;
	// negative: do not wait.
	RetryLock time.Duration
}

var errTimedOut = errors.New("runner: timed out")

// Run runs spec and reports the outcome; it never returns without a Result
// and never panics on bad input. ctx cancels the run: restic gets SIGINT and,
// after Grace, is killed.
func (r *Runner) Run(ctx context.Context, spec Spec, h Hooks) Result {
	defer spec.Reservation.Release() // unused when the run never reached the lock
	op := operations[spec.Kind]
	if spec.Kind == KindRestore && spec.Restore.ToCommand != nil {
		op = opRestoreTo{}
	}
	return r.run(ctx, spec, op, h)
}

// Reserve takes spec's place in its repository's queue now, for a run that
// starts later (set it as spec.Reservation). Nil when the run would not
// queue: no Locks, or an operation that reads without locking.
func (r *Runner) Reserve(spec Spec) *Reservation {
	op := operations[spec.Kind]
	if _, free := op.(lockFree); r.Locks == nil || op == nil || free {
		return nil
	}
	return r.Locks.ReserveAll(lockKeys(&spec)...)
}

// lockKeys are the Runner.Locks keys a run holds: its repository's and,
// for a copy, its destination's, so that a copy does not write into a
// repository this agent is pruning or backing up to.
func lockKeys(spec *Spec) []string {
	keys := []string{repoKey(spec.Repo.URL)}
	if spec.Kind == KindCopy {
		keys = append(keys, repoKey(spec.Copy.To.URL))
	}
	return keys
}

// run is Run with the operation (nil: unknown kind); LsStream and the
// locks probe come here with operations of their own.
func (r *Runner) run(ctx context.Context, spec Spec, op operation, h Hooks) (res Result) {
	res.ExitCode = -1
	begun := time.Now()
	sec := newRedactor(append(spec.repos(), spec.commandEnvs()...)...)
	log := r.logger().With("kind", spec.Kind, "repo", RedactURL(spec.Repo.URL))
	if spec.Kind == KindCopy {
		log = log.With("to_repo", RedactURL(spec.Copy.To.URL))
	}
	defer func() {
		if res.EndedAt.IsZero() {
			res.EndedAt = time.Now()
		}
		res.Error = sec.redact(res.Error)
		level := slog.LevelInfo
		if res.Status != StatusSucceeded {
			level = slog.LevelWarn
		}
		log.Log(context.Background(), level, "restic run ended",
			"status", res.Status, "exit_code", res.ExitCode, "error", res.Error,
			"snapshot", res.SnapshotID, "waited", res.Waited, "duration", res.EndedAt.Sub(begun).Round(time.Millisecond))
	}()

	if op == nil {
		return failed(res, fmt.Sprintf("unknown operation kind %q", spec.Kind))
	}
	v, err := parseResticVersion(r.ResticVersion)
	if err != nil {
		return failed(res, "runner: Runner.ResticVersion: "+err.Error())
	}
	argv, err := op.argv(&spec, v)
	if err == nil {
		err = validateRepo(spec.Repo)
	}
	if err != nil {
		return failed(res, err.Error())
	}

	if spec.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, spec.Timeout, errTimedOut)
		defer cancel()
	}

	if _, free := op.(lockFree); r.Locks != nil && !free {
		var unlock func()
		var waited bool
		var err error
		keys := lockKeys(&spec)
		if rv := spec.Reservation; rv != nil && rv.l == r.Locks && slices.Equal(rv.keys(), r.Locks.sortKeys(keys)) {
			unlock, waited, err = rv.Wait(ctx)
		} else if err = ctx.Err(); err == nil {
			unlock, waited, err = r.Locks.ReserveAll(keys...).Wait(ctx)
		}
		res.Waited = waited
		if err != nil {
			res = interrupted(ctx, res, spec.Timeout)
			res.Error += " while waiting for the repository lock"
			return res
		}
		defer unlock()
		if waited {
			log.Info("waited for the repository lock", "waited", time.Since(begun).Round(time.Millisecond))
		}
	}
	if h.OnLocked != nil {
		if err := h.OnLocked(); err != nil {
			return failed(res, err.Error())
		}
	}
	if m, ok := op.(multiRun); ok {
		return m.runAll(ctx, r, &spec, v, argv, h, sec, log, res)
	}
	return r.execute(ctx, &spec, op, v, argv, h, sec, log, res)
}

// failed ends res as failed with msg.
func failed(res Result, msg string) Result {
	res.Status = StatusFailed
	res.Error = msg
	return res
}

// interrupted ends res as cancelled, or as failed when ctx ended by Spec.Timeout.
func interrupted(ctx context.Context, res Result, timeout time.Duration) Result {
	if errors.Is(context.Cause(ctx), errTimedOut) {
		return failed(res, "timed out after "+timeout.String())
	}
	res.Status = StatusCancelled
	res.Error = "cancelled"
	return res
}

func (r *Runner) logger() *slog.Logger {
	if r.Logger != nil {
		return r.Logger
	}
	return slog.New(slog.DiscardHandler)
}

func (r *Runner) grace() time.Duration {
	if r.Grace > 0 {
		return r.Grace
	}
	return DefaultGrace
}

func (r *Runner) retryLock() time.Duration {
	if r.RetryLock == 0 {
		return DefaultRetryLock
	}
	return r.RetryLock
}

func (r *Runner) progressInterval() time.Duration {
	if r.ProgressInterval > 0 {
		return r.ProgressInterval
	}
	return DefaultProgressInterval
}
