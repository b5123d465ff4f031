package runner

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"strings"

	"github.com/restic-manager/restic-manager/agentcmd"
)

// opRestoreTo streams one file of a snapshot (a source's dump) into the
// source's restore command: `restic dump SNAPSHOT FILE` with its standard
// output piped into the command's standard input (psql, pg_restore,
// mariadb). The agent holds the pipe's write end until restic has ended:
// when restic fails halfway, the command is killed before it sees the end
// of its input, so that a half dump is never applied as if whole.
type opRestoreTo struct{}

// RestoreToOutput is the output of a restore into a source's command.
type RestoreToOutput struct {
	File         string `json:"file"`
	CommandExit  int    `json:"command_exit_code"`
	CommandError string `json:"command_error,omitempty"`
}

func (opRestoreTo) argv(spec *Spec, _ resticVersion) ([]string, error) {
	a := &spec.Restore
	if err := checkSnapshotID("snapshot", a.SnapshotID, true); err != nil {
		return nil, err
	}
	f, err := checkTreePath("file", a.File)
	if err != nil {
		return nil, err
	}
	if a.ToCommand == nil || len(a.ToCommand.Argv) == 0 {
		return nil, errors.New("restore to a source: the source has no restore command")
	}
	return []string{"dump", "--", a.SnapshotID, f}, nil
}

func (opRestoreTo) progress() bool { return false }

func (opRestoreTo) complete(_ *output, _ int, res *Result) { res.Status = StatusSucceeded }

func (o opRestoreTo) runAll(ctx context.Context, r *Runner, spec *Spec, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	pr, pw, err := os.Pipe()
	if err != nil {
		return failed(res, "cannot make the restore's pipe: "+err.Error())
	}
	defer pw.Close()
	cmdCtx, stopCmd := context.WithCancel(ctx)
	defer stopCmd()
	p, err := agentcmd.Start(cmdCtx, *spec.Restore.ToCommand, nil, pr, nil)
	pr.Close() // the command has its own copy
	if err != nil {
		return failed(res, err.Error())
	}
	run := *spec
	run.proc = procExtras{stdout: pw}
	rres := r.execute(ctx, &run, o, v, argv, h, sec, log, res)
	if rres.Status != StatusSucceeded {
		stopCmd() // before it reads the end of a partial dump
	}
	pw.Close()
	co := p.Wait()
	out := RestoreToOutput{File: spec.Restore.File, CommandExit: co.ExitCode, CommandError: co.Error()}
	rres.Output = mustJSON(out)
	if tail := strings.TrimSpace(co.Tail); tail != "" {
		rres.StderrTail = clipTail(strings.TrimSpace(rres.StderrTail + "\n" + tail))
	}
	switch {
	case rres.Status != StatusSucceeded:
		rres.Error = "restic could not read the dump, the restore command was stopped: " + rres.Error
	case !co.OK():
		rres.Status = StatusFailed
		rres.Error = "the restore command failed (" + co.Error() + ")"
		if tail := strings.TrimSpace(co.Tail); tail != "" {
			rres.Error += ": " + lastLines(tail, 5)
		}
		rres.Error = clip(rres.Error)
	}
	return rres
}
