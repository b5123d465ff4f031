package wire

import (
	"fmt"
	"regexp"
	"time"
)

// Hooks and sources: the console names, the agent defines. The commands
// behind a name live only in the agent's own configuration; these types
// carry names and results, never a command.

// Hook phases, in the order a backup runs them.
const (
	HookBefore    = "before"
	HookAfter     = "after"
	HookOnFailure = "on_failure"
)

// Limits of what an agent may claim about its hooks and sources, and of
// what a job may ask for.
const (
	MaxHookNames   = 64   // hooks or sources an agent reports, or a backup names
	MaxHookRuns    = 200  // hook runs in one result (three phases of the named hooks)
	MaxHookTail    = 4096 // bytes of a hook's output kept in the result
	MaxLimitKiB    = 10_000_000
	sourceTagLabel = "source:"
)

var commandNameRe = regexp.MustCompile(`^[a-z0-9][a-z0-9_.-]{0,63}$`)

// ValidCommandName reports whether s can name a hook or a source: 1 to 64
// lower-case letters, digits, '_', '.', '-', starting with a letter or digit.
func ValidCommandName(s string) bool { return commandNameRe.MatchString(s) }

// CheckCommandNames checks a list of hook or source names (what: "hook" or
// "source"): valid, at most MaxHookNames, none twice.
func CheckCommandNames(what string, names []string) error {
	if len(names) > MaxHookNames {
		return badArgs("%d %ss, at most %d", len(names), what, MaxHookNames)
	}
	seen := make(map[string]bool, len(names))
	for _, n := range names {
		if !ValidCommandName(n) {
			return badArgs("%s name %q is not 1-64 characters of a-z, 0-9, '_', '.', '-'", what, n)
		}
		if seen[n] {
			return badArgs("%s %q named twice", what, n)
		}
		seen[n] = true
	}
	return nil
}

// SourceTag is the tag every snapshot of source name carries, so that
// browsing, restore and forget can tell dumps from file backups.
func SourceTag(name string) string { return sourceTagLabel + name }

// SourceOfTags returns the source a snapshot's tags name ("" for a file
// backup).
func SourceOfTags(tags []string) string {
	for _, t := range tags {
		if len(t) > len(sourceTagLabel) && t[:len(sourceTagLabel)] == sourceTagLabel {
			return t[len(sourceTagLabel):]
		}
	}
	return ""
}

// HookRun is one hook command's run, part of a job's result.
type HookRun struct {
	Name       string `json:"name"`
	Phase      string `json:"phase"` // HookBefore, HookAfter or HookOnFailure
	ExitCode   int    `json:"exit_code"`
	DurationMS int64  `json:"duration_ms"`
	// OutputTail is the last MaxHookTail bytes of its stdout and stderr.
	OutputTail string `json:"output_tail,omitempty"`
	// Error says why it failed when the exit code does not: not started,
	// timed out, killed by a cancel.
	Error string `json:"error,omitempty"`
}

// OK reports whether the hook succeeded.
func (h HookRun) OK() bool { return h.ExitCode == 0 && h.Error == "" }

func (h *HookRun) validate() error {
	switch {
	case !ValidCommandName(h.Name):
		return fmt.Errorf("%w: hook run: bad name %q", ErrInvalid, h.Name)
	case h.Phase != HookBefore && h.Phase != HookAfter && h.Phase != HookOnFailure:
		return fmt.Errorf("%w: hook run %s: bad phase %q", ErrInvalid, h.Name, h.Phase)
	case h.DurationMS < 0 || h.DurationMS > int64(31*24*time.Hour/time.Millisecond):
		return fmt.Errorf("%w: hook run %s: duration out of range", ErrInvalid, h.Name)
	case len(h.OutputTail) > MaxHookTail || len(h.Error) > MaxHookTail:
		return fmt.Errorf("%w: hook run %s: output longer than %d bytes", ErrInvalid, h.Name, MaxHookTail)
	}
	return nil
}

// BackupOutput is a backup's output when it named sources: one snapshot
// per source (restic backs up one stdin per run), and one for the paths.
type BackupOutput struct {
	Snapshots []SourceSnapshot `json:"snapshots"`
}

// SourceSnapshot is one snapshot of a backup: of its paths (Source empty)
// or of a source's output.
type SourceSnapshot struct {
	Source     string `json:"source,omitempty"`
	Status     string `json:"status"`
	SnapshotID string `json:"snapshot_id,omitempty"`
	// Bytes is the size of the source's output (restic's total_bytes_processed).
	Bytes uint64 `json:"bytes,omitempty"`
	Error string `json:"error,omitempty"`
}
