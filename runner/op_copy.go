package runner

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"strconv"
	"strings"
	"sync"

	"github.com/restic-manager/restic-manager/wire"
)

// CopyArgs are the arguments of a copy: `restic copy` of snapshots of
// Spec.Repo (the source) into To.
//
// restic opens To with -r and the source with --from-repository-file and
// --from-password-file (both since 0.14): every URL and password goes
// through a private file. restic reads both backends' credentials from one
// environment, so two repositories setting the same variable to different
// values are refused (checkPairedEnv). The run holds Runner.Locks for both
// repositories.
type CopyArgs struct {
	To Repo
	// SnapshotIDs copies these snapshots (IDs or prefixes of 8+ hex
	// digits). Empty: the snapshots of Hostname (--host). One of the two
	// is needed: the runner never copies a whole shared repository by
	// accident.
	SnapshotIDs []string
	Hostname    string
}

// opCopy is `restic copy -v`. restic copy has no JSON output in any
// version: the runner reads its text, the same in 0.14 and 0.18:
//
//	snapshot 1949f3a8 of [/data] at 2026-12-07 04:00:00 +0000 UTC by root@h1
//	  copy started, this may take a while...
//	[0:00] 100.00%  2 / 2 packs copied
//	snapshot d9b1f66d saved
//
//	snapshot d2ba8e2a of [/data] at ... )
//	skipping source snapshot d2ba8e2a, was already copied to snapshot 000de438
//
// -v because restic 0.15 and later print the "skipping" lines only when
// verbose. The IDs restic prints are short (8 hex digits); Output.Copied
// holds the source snapshots' short IDs.
type opCopy struct{}

func (opCopy) progress() bool { return true }

func (opCopy) argv(spec *Spec, _ resticVersion) ([]string, error) {
	c := &spec.Copy
	if err := validateRepo(c.To); err != nil {
		return nil, fmt.Errorf("the copy's destination repository: %w", err)
	}
	if repoKey(c.To.URL) == repoKey(spec.Repo.URL) {
		return nil, errors.New("the copy's destination is its source repository")
	}
	if err := checkPairedEnv(c.To, spec.Repo); err != nil {
		return nil, fmt.Errorf("cannot copy between these repositories: %w", err)
	}
	args := []string{"copy", "-v"}
	if len(c.SnapshotIDs) == 0 {
		if c.Hostname == "" {
			return nil, errors.New("a copy names its snapshots or their host: the runner does not copy every snapshot of the source")
		}
		host, err := filterArgs([]string{c.Hostname}, nil, nil)
		if err != nil {
			return nil, err
		}
		return append(args, host...), nil
	}
	for _, id := range c.SnapshotIDs {
		if err := checkSnapshotID("snapshot ID", id, false); err != nil {
			return nil, err
		}
	}
	args = append(args, "--")
	return append(args, c.SnapshotIDs...), nil
}

// repos: restic opens the destination with -r, the source with --from-*.
func (opCopy) repos(spec *Spec) (Repo, *Repo) {
	src := spec.Repo
	return spec.Copy.To, &src
}

var (
	copySnapshotRE = regexp.MustCompile(`^snapshot ([0-9a-f]{8,64}) of \[`)
	copySavedRE    = regexp.MustCompile(`^snapshot ([0-9a-f]{8,64}) saved$`)
	copySkippedRE  = regexp.MustCompile(`^skipping source snapshot ([0-9a-f]{8,64}), was already copied to snapshot [0-9a-f]{8,64}$`)
	copyIgnoredRE  = regexp.MustCompile(`^Ignoring "([^"]*)": `)
	// "[0:03] 42.50%  17 / 40 packs copied", "[1:02:03] ..." (hours).
	copyProgressRE = regexp.MustCompile(`^\[(?:(\d+):)?(\d+):(\d\d)\]\s+(\d+(?:\.\d+)?)%`)
)

func (opCopy) newParser(*Spec) parser { return &copyParser{} }

// copyParser follows restic copy's text. restic copies one snapshot after
// the other: a progress line's percentage is that of the snapshot being
// copied.
type copyParser struct {
	mu       sync.Mutex
	current  string // the source snapshot being handled
	copied   []string
	skipped  int
	notFound []string // IDs restic ignored: no such snapshot in the source
}

func (p *copyParser) stdout(line []byte, kind lineKind, _ string) bool {
	if kind != lineText {
		return false
	}
	p.line(strings.TrimSpace(cleanText(line)))
	return false
}

func (p *copyParser) stderr(line []byte, kind lineKind, _ string) {
	if kind == lineText {
		p.line(strings.TrimSpace(cleanText(line)))
	}
}

func (p *copyParser) line(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := copySnapshotRE.FindStringSubmatch(s); m != nil {
		p.current = m[1]
	} else if m := copySavedRE.FindStringSubmatch(s); m != nil && p.current != "" {
		p.copied = append(p.copied, p.current)
		p.current = ""
	} else if copySkippedRE.MatchString(s) {
		p.skipped++
		p.current = ""
	} else if m := copyIgnoredRE.FindStringSubmatch(s); m != nil {
		p.notFound = append(p.notFound, m[1])
	}
}

// textStatus turns a progress line into Progress (the output's
// textProgress).
func (p *copyParser) textStatus(line []byte) (Progress, bool) {
	m := copyProgressRE.FindStringSubmatch(strings.TrimSpace(cleanText(line)))
	if m == nil {
		return Progress{}, false
	}
	h, _ := strconv.Atoi(m[1])
	mi, _ := strconv.Atoi(m[2])
	sec, _ := strconv.Atoi(m[3])
	pct, err := strconv.ParseFloat(m[4], 64)
	if err != nil {
		return Progress{}, false
	}
	return Progress{Percent: min(pct, 100), SecondsElapsed: float64(h*3600 + mi*60 + sec)}, true
}

// output is what the parser saw; Copied is never null.
func (p *copyParser) output() (wire.CopyOutput, []string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	o := wire.CopyOutput{Copied: append([]string{}, p.copied...), Skipped: p.skipped}
	return o, append([]string(nil), p.notFound...)
}

func (opCopy) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		opCopy{}.failedOutput(out, code, res)
		return
	}
	o, notFound := parserOf[copyParser](out).output()
	succeed(res, o)
	if len(notFound) > 0 {
		// restic exits 0 after ignoring an ID it did not find.
		res.Error = clip("not in the source repository: " + strings.Join(notFound, ", "))
		res.Status = StatusFailed
		if len(o.Copied)+o.Skipped > 0 {
			res.Status = StatusPartial
		}
	}
}

// failedOutput reports the snapshots copied before restic failed: they
// are in the destination.
func (opCopy) failedOutput(out *output, _ int, res *Result) {
	if o, _ := parserOf[copyParser](out).output(); len(o.Copied)+o.Skipped > 0 {
		res.Output = mustJSON(o)
	}
}

// runAll runs the copy and, when restic failed on a wrong password or a
// missing repository, tells which of the two: restic's message is the
// same for both ("wrong password or no key found"). It asks the
// destination for its config; restic opens the source first, so a
// destination that opens means the source was at fault.
func (o opCopy) runAll(ctx context.Context, r *Runner, spec *Spec, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	cres := r.execute(ctx, spec, o, v, argv, h, sec, log, res)
	if cres.Status != StatusFailed || cres.Cause != CauseWrongPassword && cres.Cause != CauseNoRepository || ctx.Err() != nil {
		return cres
	}
	probe := Spec{Kind: KindCopy, Repo: spec.Copy.To}
	pres := r.execute(ctx, &probe, opProbeConfig{}, v, []string{"cat", "config", "--no-lock"}, Hooks{}, sec, log, Result{ExitCode: -1})
	switch {
	case pres.Status == StatusSucceeded:
		cres.Error = "the source repository: " + cres.Error
	case pres.Status == StatusFailed && pres.Cause == cres.Cause:
		cres.Error = "the destination repository: " + cres.Error
	}
	return cres
}

// opProbeConfig is `restic cat config`: does a repository open with its
// password? Only the exit code counts.
type opProbeConfig struct{}

func (opProbeConfig) argv(*Spec, resticVersion) ([]string, error) {
	return []string{"cat", "config", "--no-lock"}, nil
}
func (opProbeConfig) progress() bool { return false }
func (opProbeConfig) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	res.Status = StatusSucceeded
}
