package runner

import (
	"github.com/restic-manager/restic-manager/agentcmd"

	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
)

// RestoreArgs are the arguments of a restore.
type RestoreArgs struct {
	SnapshotID string   // 8–64 hex, or "latest"
	Include    []string // restore only these paths inside the snapshot (absolute: "/home/x", Windows "/C/Users/x"; restic patterns)
	// Target is the directory to restore into (an absolute path on the
	// agent's host): the snapshot's paths are recreated below it. Required
	// unless InPlace.
	Target string
	// InPlace restores to the original locations (target "/"). Not on
	// Windows (restic's tree paths are /C/…, which do not map to a target).
	InPlace bool
	// Overwrite is restic's --overwrite (0.17+): "always" (restic's default),
	// "if-changed", "if-newer" or "never". Older restic always overwrites:
	// any other value is refused with them. Empty: restic's default.
	Overwrite string
	Verify    bool // --verify: read the restored files back and compare
	// ToCommand, when set, streams one file of the snapshot (File, a path
	// inside it) into a source's restore command instead of restoring
	// files (op_restore_source.go).
	ToCommand *agentcmd.Spec
	File      string
}

// RestoreOutput is Result.Output of restore. From restic 0.16 every count of
// restic's summary is set (skipped: 0.17+, deleted: 0.18+, else 0); before,
// restore has no JSON and only FilesVerified (with Verify) can be read
// from its text.
type RestoreOutput struct {
	TotalFiles     *uint64  `json:"total_files,omitempty"`
	FilesRestored  *uint64  `json:"files_restored,omitempty"`
	FilesSkipped   *uint64  `json:"files_skipped,omitempty"`
	FilesDeleted   *uint64  `json:"files_deleted,omitempty"`
	TotalBytes     *uint64  `json:"total_bytes,omitempty"`
	BytesRestored  *uint64  `json:"bytes_restored,omitempty"`
	BytesSkipped   *uint64  `json:"bytes_skipped,omitempty"`
	SecondsElapsed *float64 `json:"seconds_elapsed,omitempty"`
	FilesVerified  *uint64  `json:"files_verified,omitempty"`
	Errors         int      `json:"errors,omitempty"` // errors restic reported for single files
}

// opRestore is `restic restore --json`: status and summary lines since
// 0.16; 0.14–0.15 print text ("restoring <Snapshot …> to …", with --verify
// "finished verifying N files in …") and errors as "ignoring error for …".
type opRestore struct{}

func (opRestore) progress() bool { return true }

var overwriteModes = map[string]bool{"always": true, "if-changed": true, "if-newer": true, "never": true}

func (opRestore) argv(spec *Spec, v resticVersion) ([]string, error) {
	a := &spec.Restore
	if err := checkSnapshotID("snapshot ID", a.SnapshotID, true); err != nil {
		return nil, err
	}
	var target string
	switch {
	case a.InPlace && a.Target != "":
		return nil, errors.New("restore refused: set either Target or InPlace, not both")
	case a.InPlace && runtime.GOOS == "windows":
		return nil, errors.New("in-place restore refused: not supported on Windows (restore to a Target directory)")
	case a.InPlace:
		target = "/"
	case a.Target == "":
		return nil, errors.New("restore refused: no Target directory (or InPlace)")
	default:
		if err := checkArg("target", a.Target); err != nil {
			return nil, err
		}
		if !filepath.IsAbs(a.Target) {
			return nil, fmt.Errorf("target %q refused: must be an absolute path", a.Target)
		}
		if filepath.Clean(a.Target) == filepath.Clean("/") {
			return nil, fmt.Errorf("target %q refused: restoring to the original locations is InPlace", a.Target)
		}
		target = a.Target
	}
	args := []string{"restore", "--json", "--target=" + target}
	for _, p := range a.Include {
		if _, err := checkTreePath("include path", p); err != nil {
			return nil, err
		}
		args = append(args, "--include="+p)
	}
	switch {
	case a.Overwrite == "":
	case !overwriteModes[a.Overwrite]:
		return nil, fmt.Errorf("overwrite mode %q refused: must be \"always\", \"if-changed\", \"if-newer\" or \"never\"", a.Overwrite)
	case v.atLeast(0, 17, 0):
		args = append(args, "--overwrite="+a.Overwrite)
	case a.Overwrite != "always":
		return nil, fmt.Errorf("overwrite mode %q refused: restic %s always overwrites (--overwrite needs restic 0.17 or newer)", a.Overwrite, v)
	}
	if a.Verify {
		args = append(args, "--verify")
	}
	return append(args, a.SnapshotID), nil
}

func (opRestore) newParser(*Spec) parser { return &restoreParser{} }

var (
	restoreVerifiedRE = regexp.MustCompile(`^finished verifying (\d+) files in `)
	restoreErrorRE    = regexp.MustCompile(`^ignoring error for `)
)

// restoreParser reads the text of restic < 0.16.
type restoreParser struct {
	mu         sync.Mutex
	verified   *uint64
	textErrors int
}

func (p *restoreParser) stdout(line []byte, kind lineKind, _ string) bool {
	if kind == lineText {
		if m := restoreVerifiedRE.FindStringSubmatch(strings.TrimSpace(cleanText(line))); m != nil {
			if n, err := strconv.ParseUint(m[1], 10, 64); err == nil {
				p.mu.Lock()
				p.verified = &n
				p.mu.Unlock()
			}
		}
	}
	return false
}

func (p *restoreParser) stderr(line []byte, kind lineKind, _ string) {
	if kind == lineText && restoreErrorRE.Match(line) {
		p.mu.Lock()
		p.textErrors++
		p.mu.Unlock()
	}
}

// restoreSummary is restic's restore summary (0.16+).
type restoreSummary struct {
	SecondsElapsed float64 `json:"seconds_elapsed"`
	TotalFiles     uint64  `json:"total_files"`
	FilesRestored  uint64  `json:"files_restored"`
	FilesSkipped   uint64  `json:"files_skipped"`
	FilesDeleted   uint64  `json:"files_deleted"`
	TotalBytes     uint64  `json:"total_bytes"`
	BytesRestored  uint64  `json:"bytes_restored"`
	BytesSkipped   uint64  `json:"bytes_skipped"`
}

func (opRestore) output(out *output) RestoreOutput {
	var ro RestoreOutput
	if summary, _ := out.summaryAndID(); summary != nil {
		var s restoreSummary
		if json.Unmarshal(summary, &s) == nil {
			ro = RestoreOutput{
				TotalFiles: &s.TotalFiles, FilesRestored: &s.FilesRestored, FilesSkipped: &s.FilesSkipped,
				FilesDeleted: &s.FilesDeleted, TotalBytes: &s.TotalBytes, BytesRestored: &s.BytesRestored,
				BytesSkipped: &s.BytesSkipped, SecondsElapsed: &s.SecondsElapsed,
			}
		}
	}
	p := parserOf[restoreParser](out)
	p.mu.Lock()
	ro.FilesVerified = p.verified
	textErrors := p.textErrors
	p.mu.Unlock()
	out.mu.Lock()
	ro.Errors = max(out.errorCount, textErrors)
	out.mu.Unlock()
	return ro
}

func (o opRestore) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	succeed(res, o.output(out))
}

// failedOutput: restic exits 1 after errors on single files ("There were N
// errors"), having restored the rest.
func (o opRestore) failedOutput(out *output, code int, res *Result) {
	if ro := o.output(out); ro.FilesRestored != nil || ro.Errors > 0 {
		res.Output = mustJSON(ro)
	}
}
