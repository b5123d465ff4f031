package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"

	"github.com/restic-manager/restic-manager/agentcmd"
	"github.com/restic-manager/restic-manager/wire"
)

// A backup with sources makes one snapshot of its paths (when it has
// any) and one per source, each holding the source's output as one file
// and tagged wire.SourceTag(name), all under one repository lock.
//
// One snapshot per source rather than one holding every dump: restic
// backs up one standard input per run, so a single snapshot would need
// the dumps written to local disk first (as large as the databases, the
// space a streamed dump saves), and a snapshot per source lets forget
// keep each database's history by itself (restic groups by paths, and
// each source's path is its own /FILENAME).
//
// restic 0.17 and later run the command themselves (--stdin-from-command)
// and make no snapshot when it fails. Older restic, and a source that runs
// as another user (restic could not switch), get the dump through a pipe
// into --stdin: the agent holds the pipe's write end until the dump has
// exited, and when it failed interrupts restic before restic sees the end
// of its input, so that no snapshot of a truncated dump is made; should
// one exist anyway, it is forgotten.

var errSourceTimedOut = errors.New("source timed out")

func (o opBackup) runAll(ctx context.Context, r *Runner, spec *Spec, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	b := &spec.Backup
	if len(b.Sources) == 0 {
		return r.execute(ctx, spec, o, v, argv, h, sec, log, res)
	}
	// OnStart and OnProcess belong to the job's first restic run; every
	// run reports progress.
	first := true
	hooksOf := func() Hooks {
		if first {
			first = false
			return h
		}
		return Hooks{OnProgress: h.OnProgress}
	}
	var runs []Result
	var out wire.BackupOutput
	if len(b.Paths) > 0 {
		pres := r.execute(ctx, spec, o, v, argv, hooksOf(), sec, log, res)
		runs = append(runs, pres)
		out.Snapshots = append(out.Snapshots, wire.SourceSnapshot{Status: pres.Status, SnapshotID: pres.SnapshotID, Error: pres.Error})
	}
	for _, src := range b.Sources {
		var sres Result
		if ctx.Err() != nil {
			sres = interrupted(ctx, res, spec.Timeout)
		} else {
			sres = r.backupSource(ctx, spec, src, v, hooksOf(), sec, log.With("source", src.Name), res)
		}
		if sres.Status != StatusSucceeded && sres.Error != "" {
			sres.Error = "source " + src.Name + ": " + sres.Error
		}
		runs = append(runs, sres)
		out.Snapshots = append(out.Snapshots, wire.SourceSnapshot{Source: src.Name, Status: sres.Status, SnapshotID: sres.SnapshotID,
			Bytes: summaryBytes(sres), Error: sres.Error})
	}
	return combine(runs, out, res)
}

// backupSource makes the snapshot of one source.
func (r *Runner) backupSource(ctx context.Context, spec *Spec, src Source, v resticVersion, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	if err := checkSourceName(src); err != nil {
		return failed(res, err.Error())
	}
	args, err := backupCommonArgs(&spec.Backup)
	if err != nil {
		return failed(res, err.Error())
	}
	args = append(args, "--tag="+wire.SourceTag(src.Name), "--stdin-filename", src.Filename)
	run := *spec
	if src.Cmd.Timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeoutCause(ctx, src.Cmd.Timeout, errSourceTimedOut)
		defer cancel()
	}
	var sres Result
	if v.atLeast(0, 17, 0) && src.Cmd.User == "" {
		args = append(args, "--stdin-from-command", "--")
		args = append(args, src.Cmd.Argv...)
		run.proc = procExtras{env: src.Cmd.Env, dir: src.Cmd.Dir, killGroup: true}
		sres = r.execute(ctx, &run, opBackup{}, v, args, h, sec, log, res)
		if sres.Status == StatusFailed && strings.Contains(sres.StderrTail, "command failed: exit status") {
			sres.Error = "the dump command failed: " + lastLines(commandLines(sres.StderrTail), 5)
		}
	} else {
		sres = r.backupThroughPipe(ctx, &run, src, v, append(args, "--stdin"), h, sec, log, res)
	}
	if errors.Is(context.Cause(ctx), errSourceTimedOut) && sres.Status == StatusCancelled {
		sres.Status, sres.Error = StatusFailed, fmt.Sprintf("timed out after %s", src.Cmd.Timeout)
	}
	return sres
}

// backupThroughPipe runs the dump with its output piped into restic
// --stdin, checking the dump's exit status itself (restic before 0.17
// cannot).
func (r *Runner) backupThroughPipe(ctx context.Context, spec *Spec, src Source, v resticVersion, args []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	pr, pw, err := os.Pipe()
	if err != nil {
		return failed(res, "cannot make the dump's pipe: "+err.Error())
	}
	defer pr.Close()
	dumpCtx, stopDump := context.WithCancel(ctx)
	defer stopDump()
	dump, err := agentcmd.Start(dumpCtx, src.Cmd, nil, nil, pw)
	if err != nil {
		pw.Close()
		return failed(res, err.Error())
	}

	// restic's process, once started; a dump that fails before then
	// interrupts restic as soon as it is.
	var mu sync.Mutex
	var restic *os.Process
	dumpFailed := false
	stopRestic := func() {
		if restic != nil {
			_ = interrupt(restic)
		}
	}
	dumped := make(chan agentcmd.Outcome, 1)
	go func() {
		o := dump.Wait()
		mu.Lock()
		if !o.OK() {
			dumpFailed = true
			stopRestic() // before restic sees the end of its input
		}
		mu.Unlock()
		pw.Close()
		dumped <- o
	}()
	hooks := h
	hooks.OnProcess = func(pid int) {
		// restic has its own copy of the read end: without ours, a restic
		// that dies early makes the dump fail on a broken pipe instead of
		// blocking forever.
		pr.Close()
		p, err := os.FindProcess(pid)
		mu.Lock()
		if err == nil {
			restic = p
			if dumpFailed {
				stopRestic()
			}
		}
		mu.Unlock()
		if h.OnProcess != nil {
			h.OnProcess(pid)
		}
	}
	spec.proc = procExtras{stdin: pr, killGroup: true}
	sres := r.execute(ctx, spec, opBackup{}, v, args, hooks, sec, log, res)
	stopDump() // restic is gone: a dump still writing has no reader
	o := <-dumped
	if o.OK() {
		return sres
	}
	mu.Lock()
	resticStarted := restic != nil
	mu.Unlock()
	if resticStarted && !v.atLeast(0, 17, 0) {
		// restic before 0.17 interrupted while it takes its lock may leave
		// the lock behind (seen with 0.14 under load: one run in tens):
		// plain unlock removes it (a lock of this host whose process is
		// gone), never a live one.
		r.execute(context.WithoutCancel(ctx), spec.withoutProc(), opUnlock{}, v, []string{"unlock"}, Hooks{}, sec, log, Result{ExitCode: -1})
	}
	// The dump failed: whatever restic did, this is no backup of the source.
	msg := "the dump command failed (" + o.Error() + ")"
	if tail := strings.TrimSpace(o.Tail); tail != "" {
		msg += ": " + lastLines(tail, 5)
	}
	if errors.Is(o.Err, agentcmd.ErrCancelled) && ctx.Err() != nil {
		return interrupted(ctx, sres, spec.Timeout)
	}
	if sres.SnapshotID != "" {
		log.Warn("forgetting the snapshot of a failed dump", "snapshot", sres.SnapshotID)
		fres := r.execute(context.WithoutCancel(ctx), spec.withoutProc(), opForgetIDs{ids: []string{sres.SnapshotID}}, v,
			[]string{"forget", "--", sres.SnapshotID}, Hooks{}, sec, log, Result{ExitCode: -1})
		if fres.Status != StatusSucceeded {
			msg += fmt.Sprintf("; its snapshot %s could not be forgotten: %s", sres.SnapshotID, fres.Error)
		} else {
			msg += fmt.Sprintf("; the snapshot %s restic made of it was forgotten", sres.SnapshotID[:8])
		}
	}
	sres.Status, sres.Error, sres.SnapshotID = StatusFailed, msg, ""
	if sres.StderrTail == "" {
		sres.StderrTail = o.Tail
	} else {
		sres.StderrTail = o.Tail + "\n" + sres.StderrTail
	}
	return sres
}

// withoutProc is the spec for a plain restic run (no pipe, no source env).
func (s *Spec) withoutProc() *Spec {
	c := *s
	c.proc = procExtras{}
	return &c
}

// opForgetIDs forgets snapshots by ID: the snapshot of a failed dump.
type opForgetIDs struct{ ids []string }

func (opForgetIDs) argv(*Spec, resticVersion) ([]string, error) { return nil, nil }
func (opForgetIDs) progress() bool                              { return false }
func (opForgetIDs) exclusive()                                  {}
func (opForgetIDs) complete(_ *output, _ int, res *Result)      { res.Status = StatusSucceeded }

func checkSourceName(src Source) error {
	if !wire.ValidCommandName(src.Name) {
		return fmt.Errorf("source name %q refused", src.Name)
	}
	if err := checkArg("source file name", src.Filename); err != nil || src.Filename == "" || strings.ContainsAny(src.Filename, `/\`) {
		return fmt.Errorf("source %s: file name %q refused", src.Name, src.Filename)
	}
	if len(src.Cmd.Argv) == 0 {
		return fmt.Errorf("source %s: no command", src.Name)
	}
	return nil
}

// summaryBytes is the size restic read from a source's standard input.
func summaryBytes(res Result) uint64 {
	var s struct {
		TotalBytesProcessed uint64 `json:"total_bytes_processed"`
	}
	if len(res.Summary) == 0 || json.Unmarshal(res.Summary, &s) != nil {
		return 0
	}
	return s.TotalBytesProcessed
}

// combine makes the job's result from its runs: the worst status wins
// (cancelled, failed, partial, succeeded), errors are joined, the snapshot
// is the paths' (or the first source's), the output lists every snapshot.
func combine(runs []Result, out wire.BackupOutput, res Result) Result {
	rank := map[string]int{StatusSucceeded: 0, StatusPartial: 1, StatusFailed: 2, StatusCancelled: 3}
	res.Status = StatusSucceeded
	var errs, tails []string
	for _, run := range runs {
		if res.StartedAt.IsZero() {
			res.StartedAt = run.StartedAt
		}
		if rank[run.Status] > rank[res.Status] {
			res.Status, res.ExitCode, res.Cause = run.Status, run.ExitCode, run.Cause
		}
		if res.ExitCode == -1 && run.ExitCode >= 0 && run.Status == StatusSucceeded {
			res.ExitCode = run.ExitCode
		}
		if run.Error != "" {
			errs = append(errs, run.Error)
		}
		if run.StderrTail != "" {
			tails = append(tails, run.StderrTail)
		}
		if res.SnapshotID == "" && run.SnapshotID != "" {
			res.SnapshotID, res.Summary = run.SnapshotID, run.Summary
		}
		res.Waited = res.Waited || run.Waited
	}
	res.Error = clip(strings.Join(errs, "; "))
	res.StderrTail = clipTail(strings.Join(tails, "\n"))
	res.Output = mustJSON(out)
	return res
}

// lastLines is the last n lines of s.
func lastLines(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, " | ")
}

// clipTail keeps the last tailSize bytes of the joined stderr tails.
func clipTail(s string) string {
	if len(s) <= tailSize {
		return s
	}
	return strings.ToValidUTF8("…"+s[len(s)-tailSize:], "")
}

// commandLines are the lines of a --stdin-from-command run's stderr tail
// that the command wrote (restic's own are JSON), with restic's
// "subprocess NAME: " prefix removed.
func commandLines(tail string) string {
	var keep []string
	for _, l := range strings.Split(tail, "\n") {
		if t := strings.TrimSpace(l); t == "" || strings.HasPrefix(t, "{") {
			continue
		}
		if strings.HasPrefix(l, "subprocess ") {
			if i := strings.Index(l, ": "); i > 0 {
				l = l[i+2:]
			}
		}
		keep = append(keep, l)
	}
	if len(keep) == 0 {
		return "restic: command failed"
	}
	return strings.Join(keep, "\n")
}
