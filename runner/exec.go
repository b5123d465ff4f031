package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"sync"
	"sync/atomic"
	"time"
)

// execute runs restic for one operation once the spec is valid and the
// repository lock (if any) is held.
func (r *Runner) execute(ctx context.Context, spec *Spec, op operation, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	if ctx.Err() != nil {
		return interrupted(ctx, res, spec.Timeout)
	}
	if r.Restic == "" {
		return failed(res, "runner: no restic binary configured")
	}

	// Secrets go to files only the agent's user can read, removed however
	// this function returns.
	dir, cleanupDir, err := r.secretDir()
	if err != nil {
		return failed(res, "cannot prepare the directory for secret files: "+err.Error())
	}
	defer cleanupDir()
	main, from := spec.Repo, (*Repo)(nil)
	if p, ok := op.(pairedOp); ok {
		main, from = p.repos(spec)
	}
	pwFile, err := writeSecret(dir, "restic-pw-*", main.Password)
	if err != nil {
		return failed(res, "cannot write the password file: "+err.Error())
	}
	defer os.Remove(pwFile)
	repoFile, err := writeSecret(dir, "restic-repo-*", main.URL)
	if err != nil {
		return failed(res, "cannot write the repository file: "+err.Error())
	}
	defer os.Remove(repoFile)
	env := main.Env
	var fromArgs []string
	if from != nil {
		fromPw, err := writeSecret(dir, "restic-from-pw-*", from.Password)
		if err != nil {
			return failed(res, "cannot write the second repository's password file: "+err.Error())
		}
		defer os.Remove(fromPw)
		fromRepo, err := writeSecret(dir, "restic-from-repo-*", from.URL)
		if err != nil {
			return failed(res, "cannot write the second repository's file: "+err.Error())
		}
		defer os.Remove(fromRepo)
		// Options of the subcommand (copy, init): they follow its name.
		fromArgs = []string{"--from-repository-file", fromRepo, "--from-password-file", fromPw}
		env = mergeEnv(main.Env, from.Env)
	}
	// The SFTP keys and known hosts of the run's repositories: restic has
	// one ssh setting per run, which the second repository shares.
	repos := []Repo{main}
	if from != nil {
		repos = append(repos, *from)
	}
	backendArgs, removeBackendFiles, err := backendFiles(dir, v, repos...)
	if err != nil {
		return failed(res, "cannot prepare the backend's credentials: "+err.Error())
	}
	defer removeBackendFiles()

	args := []string{"--repository-file", repoFile, "--password-file", pwFile}
	args = append(args, backendArgs...)
	if r.CacheDir != "" {
		args = append(args, "--cache-dir", r.CacheDir)
	}
	args = append(args, r.lockArgs(op, v)...)
	if spec.LimitUploadKiB > 0 {
		args = append(args, "--limit-upload", fmt.Sprint(spec.LimitUploadKiB))
	}
	if spec.LimitDownloadKiB > 0 {
		args = append(args, "--limit-download", fmt.Sprint(spec.LimitDownloadKiB))
	}
	if len(argv) > 0 {
		args = append(args, argv[0])
		args = append(args, fromArgs...)
		args = append(args, argv[1:]...)
	}

	out := newOutput(sec)
	if p, ok := op.(parsingOp); ok {
		out.parser = p.newParser(spec)
	}
	started := make(chan struct{})
	closeStarted := sync.OnceFunc(func() { close(started) })
	if op.progress() {
		out.progress = &throttle{
			interval: r.progressInterval(),
			now:      time.Now,
			deliver: func(p Progress) {
				<-started // no progress before OnStart has returned
				if h.OnProgress != nil {
					h.OnProgress(p)
				}
			},
		}
	}
	stdout, stderr := newLineWriter(out.stdoutLine), newLineWriter(out.stderrLine)
	if b, ok := op.(bigOutput); ok {
		stdout.max = b.maxStdoutLine()
	}

	cmd := exec.CommandContext(ctx, r.Restic, args...)
	fps := ""
	if op.progress() {
		fps = progressFPS(r.progressInterval())
	}
	cmd.Env = buildEnv(fps, env)
	for k, val := range spec.proc.env {
		cmd.Env = append(cmd.Env, k+"="+val)
	}
	cmd.Dir = spec.proc.dir
	cmd.Stdin = nil // /dev/null: restic never waits for a password
	if spec.proc.stdin != nil {
		cmd.Stdin = spec.proc.stdin
	}
	cmd.Stdout, cmd.Stderr = stdout, stderr
	if spec.proc.stdout != nil {
		cmd.Stdout = spec.proc.stdout // restic dump's bytes, not lines to parse
	}
	setProcAttr(cmd)
	var cancelSent atomic.Bool
	cmd.Cancel = func() error {
		cancelSent.Store(true)
		log.Info("cancelling restic", "pid", cmd.Process.Pid, "grace", r.grace())
		err := interrupt(cmd.Process)
		if spec.proc.killGroup {
			killGroupExcept(cmd.Process.Pid, cmd.Process.Pid)
		}
		return err
	}
	cmd.WaitDelay = r.grace() // then os.Process.Kill

	if err := cmd.Start(); err != nil {
		if ctx.Err() != nil {
			return interrupted(ctx, res, spec.Timeout)
		}
		return failed(res, "cannot start restic: "+err.Error())
	}
	res.StartedAt = time.Now()
	pid := cmd.Process.Pid
	log.Info("restic started", "pid", pid)

	// If a hook panics, do not leave restic running; deferred last so that
	// it runs after closeStarted has released the stdout goroutine.
	waited := false
	defer func() {
		if !waited {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
		}
	}()
	defer closeStarted()

	if h.OnProcess != nil {
		h.OnProcess(pid)
	}
	if h.OnStart != nil {
		h.OnStart(res.StartedAt)
	}
	closeStarted()

	waitErr := cmd.Wait()
	waited = true
	if spec.proc.killGroup {
		killGroup(pid)
	}
	res.EndedAt = time.Now()
	// The copying goroutines are done: hand over unterminated last lines.
	stdout.flush()
	stderr.flush()
	if errors.Is(waitErr, exec.ErrWaitDelay) {
		log.Warn("restic's output stayed open after it exited or was killed")
	}

	res = outcome(ctx, spec, op, out, exitCode(cmd.ProcessState), cancelSent.Load(), res)
	out.mu.Lock()
	res.StderrTail = out.tail.String()
	out.mu.Unlock()
	return res
}

// lockArgs are the global flags for the repository lock: --retry-lock for
// the operations that lock exclusively, when restic has it (0.16+).
func (r *Runner) lockArgs(op operation, v resticVersion) []string {
	if _, excl := op.(exclusiveOp); excl && v.atLeast(0, 16, 0) && r.retryLock() > 0 {
		return []string{"--retry-lock", r.retryLock().String()}
	}
	return nil
}

// outcome sets res from restic's exit code and output. cancelled tells
// whether the runner interrupted restic.
func outcome(ctx context.Context, spec *Spec, op operation, out *output, code int, cancelled bool, res Result) Result {
	res.ExitCode = code
	res.Summary, _ = out.summaryAndID()
	switch {
	case cancelled && code != exitOK && code != exitPartial:
		// Cancelled before restic finished. (Exit 0 or 3 after a cancel:
		// restic finished first, and its result stands.)
		res = interrupted(ctx, res, spec.Timeout)
	case code == exitOK || code == exitPartial:
		op.complete(out, code, &res)
	default:
		failCode(out, code, &res)
		if f, ok := op.(failureOutput); ok {
			f.failedOutput(out, code, &res)
		}
	}
	return res
}
