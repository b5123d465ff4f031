package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"strconv"
	"strings"

	"github.com/restic-manager/restic-manager/wire"
)

// operation is one restic subcommand. Adding a subcommand is one op_*.go file
// implementing it plus one line in operations.
type operation interface {
	// argv validates spec and returns the subcommand with its arguments,
	// for restic version v. The core adds the global flags
	// (--repository-file, --password-file, --cache-dir, --retry-lock) in
	// front. An error means restic is never started.
	argv(spec *Spec, v resticVersion) ([]string, error)
	// progress reports whether restic sends status lines for this
	// subcommand (the core then sets RESTIC_PROGRESS_FPS and throttles them).
	progress() bool
	// complete turns restic's output after exit code 0 or 3 into res: it
	// sets Status, and Output, SnapshotID or Error as they apply. Other exit
	// codes are failures the core handles alone (see failureOutput).
	complete(out *output, code int, res *Result)
}

// Optional interfaces of an operation.
type (
	// parsingOp: the operation reads restic's output line by line itself
	// (newParser is called once per run, before restic starts).
	parsingOp interface {
		newParser(spec *Spec) parser
	}
	// failureOutput: after a failing exit code (not 0 or 3) and the core's
	// failure handling, failedOutput may fill res.Output (check reports the
	// errors it found).
	failureOutput interface {
		failedOutput(out *output, code int, res *Result)
	}
	// exclusiveOp: restic locks the repository exclusively; the core passes
	// --retry-lock (restic 0.16+).
	exclusiveOp interface{ exclusive() }
	// bigOutput: restic prints its result as one JSON document on one
	// line, which may be longer than maxLine.
	bigOutput interface{ maxStdoutLine() int }
	// lockFree: the run does not take Runner.Locks (it reads without
	// locking the repository).
	lockFree interface{ lockFree() }
	// pairedOp: restic opens a second repository through its --from-*
	// options (a copy's source, the repository an init takes its chunker
	// parameters from). repos returns the repository restic opens with
	// --repository-file and the one of --from-repository-file; each gets
	// its own secret files, and restic the backend variables of both
	// (checkPairedEnv).
	pairedOp interface {
		repos(spec *Spec) (main Repo, from *Repo)
	}
	// multiRun: the operation runs restic more than once; runAll replaces
	// the core's single execute.
	multiRun interface {
		runAll(ctx context.Context, r *Runner, spec *Spec, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result
	}
)

// parser reads the output of one run as it streams.
type parser interface {
	// stdout gets every stdout line (kind lineText also for a line cut at
	// the line limit), on the goroutine reading stdout. It returns true when
	// it consumed the line: the core then neither keeps it as a message nor
	// adds it to the tail.
	stdout(line []byte, kind lineKind, typ string) bool
	// stderr gets every stderr line after the core has handled it, on the
	// goroutine reading stderr (a parser implementing both must guard its
	// state).
	stderr(line []byte, kind lineKind, typ string)
}

// rawStdout: a parser that classifies stdout lines itself (one decode of a
// line instead of the core's validity check and message_type decode before
// the parser's own). stdoutRaw returns true when it consumed the line; a
// line it did not goes through the core as any other.
type rawStdout interface {
	stdoutRaw(line []byte) bool
}

// textProgress: a parser that reads restic's status from text lines
// (a subcommand without JSON output). A line it takes goes to the progress
// throttle and neither to the parser's stdout nor to the tail.
type textProgress interface {
	textStatus(line []byte) (Progress, bool)
}

// noParser is embedded by parsers that need only one of the methods.
type noParser struct{}

func (noParser) stdout([]byte, lineKind, string) bool { return false }
func (noParser) stderr([]byte, lineKind, string)      {}

// parserOf returns the run's parser as P, or a new zero P when the output
// has none (outcome called on an output without parser, as in tests).
func parserOf[P any, PP interface {
	*P
	parser
}](out *output) PP {
	if p, ok := out.parser.(PP); ok {
		return p
	}
	return PP(new(P))
}

const bigOutputMax = 256 << 20 // stdout cap of the one-document operations (snapshots, forget, stats)

var operations = map[string]operation{
	KindInit:      opInit{},
	KindBackup:    opBackup{},
	KindForget:    opForget{},
	KindPrune:     opPrune{},
	KindCheck:     opCheck{},
	KindUnlock:    opUnlock{},
	KindSnapshots: opSnapshots{},
	KindStats:     opStats{},
	KindDiff:      opDiff{},
	KindRestore:   opRestore{},
	KindLs:        opLs{},
	KindLocks:     opLocks{},
	KindCopy:      opCopy{},
	KindRotateKey: opRotateKey{},
	KindDump:      opDump{},
}

// checkArg refuses a value restic could take for an option, or that cannot
// be passed in argv (wire.CheckArg, the console's check: the runner is the
// agent's last line of defence and checks again), naming what it was.
func checkArg(what, s string) error {
	if err := wire.CheckArg(s); err != nil {
		return fmt.Errorf("%s refused: %w", what, err)
	}
	return nil
}

// checkTreePath refuses a path inside a snapshot that is not absolute
// (restic's tree paths start with "/", on Windows too: /C/Users/x) and
// returns it cleaned. Unlike wire.CheckTreePath it takes "..": cleaned, it
// stays inside the snapshot.
func checkTreePath(what, p string) (string, error) {
	if err := checkArg(what, p); err != nil {
		return "", err
	}
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%s %q refused: must be an absolute path inside the snapshot, starting with \"/\" (Windows: /C/Users/...)", what, p)
	}
	return path.Clean(p), nil
}

// filterArgs turns snapshot filters into restic's --host, --tag and --path
// options. A tag value may hold commas: restic then selects snapshots that
// carry all of those tags.
func filterArgs(hosts, tags, paths []string) ([]string, error) {
	var args []string
	for _, h := range hosts {
		if err := checkArg("host", h); err != nil {
			return nil, err
		}
		args = append(args, "--host="+h)
	}
	for _, t := range tags {
		if err := checkArg("tag", t); err != nil {
			return nil, err
		}
		args = append(args, "--tag="+t)
	}
	for _, p := range paths {
		if err := checkArg("path", p); err != nil {
			return nil, err
		}
		args = append(args, "--path="+p)
	}
	return args, nil
}

// isHex reports whether s is lower-case hex.
func isHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !('0' <= c && c <= '9' || 'a' <= c && c <= 'f') {
			return false
		}
	}
	return s != ""
}

// checkSnapshotID accepts a snapshot ID or a prefix of one (8 to 64 lower
// case hex digits), and "latest" when allowLatest.
func checkSnapshotID(what, s string, allowLatest bool) error {
	switch {
	case s == "latest" && allowLatest, s != "latest" && wire.ValidSnapshotRef(s):
		return nil
	case allowLatest:
		return fmt.Errorf("%s %q refused: must be 8 to 64 lower-case hex digits or \"latest\"", what, s)
	}
	return fmt.Errorf("%s %q refused: must be 8 to 64 lower-case hex digits", what, s)
}

var (
	sizeRE    = regexp.MustCompile(`^[0-9]{1,19}[bBkKmMgGtT]?$`)
	percentRE = regexp.MustCompile(`^[0-9]{1,3}(\.[0-9]{1,6})?%$`)
)

// checkSize accepts restic's sizes: a number of bytes with an optional
// unit (b, k, m, g, t; 1024-based), like "100M".
func checkSize(s string) bool {
	if !sizeRE.MatchString(s) {
		return false
	}
	n := strings.TrimRight(s, "bBkKmMgGtT")
	_, err := strconv.ParseInt(n, 10, 64)
	return err == nil
}

// checkPercent accepts "x%" with 0 <= x <= 100 (positive when !zeroOK).
func checkPercent(s string, zeroOK bool) bool {
	if !percentRE.MatchString(s) {
		return false
	}
	f, err := strconv.ParseFloat(strings.TrimSuffix(s, "%"), 64)
	return err == nil && f <= 100 && (f > 0 || zeroOK && f == 0)
}

// jsonValue returns the line as JSON if it is a complete JSON value
// starting with c ('{' or '[').
func jsonValue(line []byte, c byte) []byte {
	t := bytes.TrimSpace(line)
	if len(t) == 0 || t[0] != c || !json.Valid(t) {
		return nil
	}
	return t
}

// mustJSON marshals v, which cannot fail for the output types.
func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		return json.RawMessage(`{}`)
	}
	return b
}

// succeed ends res as succeeded with output v.
func succeed(res *Result, v any) {
	res.Status = StatusSucceeded
	res.Output = mustJSON(v)
}

// failWith ends res as failed with msg.
func failWith(res *Result, msg string) {
	res.Status = StatusFailed
	res.Error = clip(msg)
}
