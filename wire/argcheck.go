package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strings"
)

// Job arguments are decoded and checked here, once, for the console (which
// gives the operator the error at once and stores the normalised form) and
// for the agent (which refuses what it cannot run as it was meant). The
// agent's runner checks the values again before they reach restic's argv.

// ErrBadArgs is matched (errors.Is) by every error of DecodeArgs and of the
// checks below. Their text is a plain message for the operator.
var ErrBadArgs = errors.New("wire: bad job arguments")

// argsError is a message for the operator that is ErrBadArgs.
type argsError string

func (e argsError) Error() string        { return string(e) }
func (e argsError) Is(target error) bool { return target == ErrBadArgs }

func badArgs(format string, a ...any) error { return argsError(fmt.Sprintf(format, a...)) }

// DecodeArgs decodes a job's arguments strictly (unknown fields refused;
// empty or null = zero value) and validates them. It returns a pointer to the
// kind's args type (*BackupArgs, *ForgetArgs, …; nil for kinds without args:
// init, locks, health). Errors satisfy errors.Is(err, ErrBadArgs); their text
// is the plain message for the operator (e.g. "backup args: at least one path
// is required").
//
// Unknown fields are refused so that an option a newer console sends is
// never silently ignored by an older agent.
func DecodeArgs(kind string, raw json.RawMessage) (any, error) {
	d, ok := lookupDef(kind)
	if !ok {
		return nil, badArgs("job kind %q is not one of %s", kind, oneOf(KindNames(nil)))
	}
	if d.args == nil {
		var none struct{}
		return nil, strictDecode(kind, raw, &none)
	}
	a := d.args()
	if err := strictDecode(kind, raw, a); err != nil {
		return nil, err
	}
	if err := a.check(); err != nil {
		return nil, err
	}
	return a, nil
}

// NormalizeArgs is DecodeArgs followed by json.Marshal of the result (nil
// for kinds without args): what the console stores and sends.
func NormalizeArgs(kind string, raw json.RawMessage) (json.RawMessage, error) {
	a, err := DecodeArgs(kind, raw)
	if err != nil || a == nil {
		return nil, err
	}
	return json.Marshal(a)
}

// strictDecode reads one JSON object into v, refusing unknown fields.
func strictDecode(kind string, raw json.RawMessage, v any) error {
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(raw))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badArgs("%s args: %v", kind, err)
	}
	if dec.More() {
		return badArgs("%s args: trailing data after the object", kind)
	}
	return nil
}

// CheckArg refuses values restic would read as options, and control bytes.
func CheckArg(s string) error {
	if s == "" {
		return badArgs("empty value")
	}
	if strings.HasPrefix(s, "-") {
		return badArgs("%q starts with '-' and would be read as an option", s)
	}
	if strings.ContainsAny(s, "\x00\n\r") {
		return badArgs("%q contains control characters", s)
	}
	return nil
}

func checkArgs(lists ...[]string) error {
	for _, list := range lists {
		for _, s := range list {
			if err := CheckArg(s); err != nil {
				return err
			}
		}
	}
	return nil
}

// checkBackupTags checks the tags a backup gives its snapshot: arguments,
// and no commas. restic splits a --tag value at commas, so a tag "a,b"
// would be two tags, and the runner refuses it: every run of the job (of
// its schedule) would fail.
func checkBackupTags(tags []string) error {
	for _, t := range tags {
		if err := CheckArg(t); err != nil {
			return err
		}
		if strings.Contains(t, ",") {
			return badArgs("tag %q contains a comma, which restic reads as a separator between tags: give each tag as its own entry", t)
		}
	}
	return nil
}

// checkFilterTags checks the tag filters of forget and snapshots. There a
// comma is restic's own syntax: "a,b" selects snapshots that carry both a
// and b (separate entries select either). An empty tag in such a group
// ("a,", "a,,b") is refused: restic would read it as "no tags at all".
func checkFilterTags(tags []string) error {
	for _, t := range tags {
		if err := CheckArg(t); err != nil {
			return err
		}
		if !strings.Contains(t, ",") {
			continue
		}
		for _, part := range strings.Split(t, ",") {
			if strings.TrimSpace(part) == "" {
				return badArgs("tag filter %q has an empty tag between commas (\"a,b\" means snapshots with both a and b)", t)
			}
		}
	}
	return nil
}

// CheckTreePath checks a path inside a snapshot ("/home/x", "/C/Users/x"):
// absolute, no "..".
func CheckTreePath(p string) error {
	if err := CheckArg(p); err != nil {
		return err
	}
	if !strings.HasPrefix(p, "/") {
		return badArgs("%q must be an absolute path inside the snapshot", p)
	}
	for _, part := range strings.Split(p, "/") {
		if part == ".." {
			return badArgs("%q must not contain '..'", p)
		}
	}
	return nil
}

// checkTarget refuses restore targets that are relative, option-like or
// climb out of themselves.
func checkTarget(p string) error {
	if err := CheckArg(p); err != nil {
		return err
	}
	if !isAbs(p) {
		return badArgs("target_path %q must be absolute", p)
	}
	for _, part := range strings.FieldsFunc(p, func(r rune) bool { return r == '/' || r == '\\' }) {
		if part == ".." {
			return badArgs("target_path %q must not contain '..'", p)
		}
	}
	return nil
}

// isAbs accepts Unix paths and Windows drive or UNC paths (the target is a
// path on the agent's machine, whatever the console runs on).
func isAbs(p string) bool {
	if strings.HasPrefix(p, "/") || strings.HasPrefix(p, `\\`) {
		return true
	}
	return len(p) >= 3 && (p[1] == ':') && (p[2] == '\\' || p[2] == '/') && (p[0]|0x20 >= 'a' && p[0]|0x20 <= 'z')
}

// CheckLimits checks a pair of bandwidth limits (KiB/s, restic's
// --limit-upload/--limit-download): 0 means none. Backups, copies, restores
// and the console's schedule windows share it so the bound is one.
func CheckLimits(uploadKiB, downloadKiB int) error {
	if uploadKiB < 0 || uploadKiB > MaxLimitKiB || downloadKiB < 0 || downloadKiB > MaxLimitKiB {
		return badArgs("bandwidth limits must be 0 (none) to %d KiB/s", MaxLimitKiB)
	}
	return nil
}

// ValidSnapshotRef accepts a snapshot ID or a prefix of one (8 to 64
// lower-case hex digits), or "latest".
func ValidSnapshotRef(s string) bool {
	if s == "latest" {
		return true
	}
	return len(s) >= 8 && len(s) <= 64 && isLowerHex(s)
}

func isLowerHex(s string) bool {
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= '0' && c <= '9' || c >= 'a' && c <= 'f') {
			return false
		}
	}
	return true
}

var (
	keepWithinRe = regexp.MustCompile(`^([0-9]+y)?([0-9]+m)?([0-9]+d)?([0-9]+h)?$`)
	subsetRe     = regexp.MustCompile(`^([0-9]+/[0-9]+|[0-9]+(\.[0-9]+)?%|[0-9]+[KMGT]?)$`)
	maxUnusedRe  = regexp.MustCompile(`^(unlimited|[0-9]+(\.[0-9]+)?%|[0-9]+[KMGT]?)$`)
)

// ValidateRetention checks a forget policy: at least one rule, no negative
// counts, keep_within in restic's duration form.
func ValidateRetention(r Retention) error {
	if (r.KeepLast|r.KeepHourly|r.KeepDaily|r.KeepWeekly|r.KeepMonthly|r.KeepYearly) == 0 && r.KeepWithin == "" {
		return badArgs("a forget needs a retention with at least one keep rule")
	}
	if r.KeepLast < 0 || r.KeepHourly < 0 || r.KeepDaily < 0 || r.KeepWeekly < 0 || r.KeepMonthly < 0 || r.KeepYearly < 0 {
		return badArgs("keep counts must not be negative")
	}
	if r.KeepWithin != "" && !keepWithinRe.MatchString(r.KeepWithin) {
		return badArgs("keep_within %q is not a duration such as 30d or 1y6m", r.KeepWithin)
	}
	return nil
}

// ValidateMaxUnused checks prune's max_unused (empty means restic's default).
func ValidateMaxUnused(v string) error {
	if v != "" && !maxUnusedRe.MatchString(v) {
		return badArgs("max_unused %q is not a size, a percentage or \"unlimited\"", v)
	}
	return nil
}

// ValidateSubset checks check's read_data_subset (empty means none).
func ValidateSubset(v string) error {
	if v != "" && !subsetRe.MatchString(v) {
		return badArgs("read_data_subset %q is not n/t, a percentage or a size", v)
	}
	return nil
}

// The check methods of the argument types, called by DecodeArgs.

func (a *BackupArgs) check() error {
	if len(a.Paths) == 0 && len(a.Sources) == 0 {
		return badArgs("backup args: at least one path or source is required")
	}
	if err := checkBackupTags(a.Tags); err != nil {
		return err
	}
	if err := CheckCommandNames("hook", a.Hooks); err != nil {
		return err
	}
	if err := CheckCommandNames("source", a.Sources); err != nil {
		return err
	}
	for _, t := range a.Tags {
		if SourceOfTags([]string{t}) != "" {
			return badArgs("tag %q refused: tags starting with %q mark source snapshots", t, sourceTagLabel)
		}
	}
	if err := CheckLimits(a.LimitUploadKiB, a.LimitDownloadKiB); err != nil {
		return err
	}
	return checkArgs(a.Paths, a.Excludes, a.ExcludeFiles)
}

func (a *ForgetArgs) check() error {
	if err := ValidateRetention(a.Retention); err != nil {
		return err
	}
	if err := checkFilterTags(a.Tags); err != nil {
		return err
	}
	return checkArgs(a.Hosts)
}

func (a *PruneArgs) check() error { return ValidateMaxUnused(a.MaxUnused) }

func (a *CheckArgs) check() error { return ValidateSubset(a.ReadDataSubset) }

func (a *UnlockArgs) check() error { return nil }

// destructive: remove_all removes other clients' locks too.
func (a *UnlockArgs) destructive() bool { return a.RemoveAll }

func (a *SnapshotsArgs) check() error {
	if err := checkFilterTags(a.Tags); err != nil {
		return err
	}
	return checkArgs(a.Hosts, a.Paths)
}

func (a *StatsArgs) check() error {
	if a.Mode != "" && a.Mode != "restore-size" && a.Mode != "raw-data" {
		return badArgs("stats mode must be restore-size or raw-data")
	}
	for _, id := range a.SnapshotIDs {
		if !ValidSnapshotRef(id) {
			return badArgs("snapshot id %q is not 8-64 hex characters or \"latest\"", id)
		}
	}
	return nil
}

func (a *DiffArgs) check() error {
	if !ValidSnapshotRef(a.SnapshotA) || !ValidSnapshotRef(a.SnapshotB) || a.SnapshotA == "latest" || a.SnapshotB == "latest" {
		return badArgs("diff needs snapshot_a and snapshot_b as 8-64 hex characters")
	}
	return nil
}

func (a *RestoreArgs) check() error {
	if !ValidSnapshotRef(a.SnapshotID) {
		return badArgs("restore needs a snapshot_id (8-64 hex characters or \"latest\")")
	}
	if a.ToSource != "" {
		if !ValidCommandName(a.ToSource) {
			return badArgs("to_source %q is not a source name", a.ToSource)
		}
		if a.InPlace || a.TargetPath != "" || len(a.Include) > 1 {
			return badArgs("a restore to a source takes no target_path, in_place or more than one include")
		}
	} else if a.InPlace == (a.TargetPath != "") {
		return badArgs("restore needs exactly one of target_path and in_place")
	}
	if a.TargetPath != "" {
		if err := checkTarget(a.TargetPath); err != nil {
			return err
		}
	}
	for _, p := range a.Include {
		if err := CheckTreePath(p); err != nil {
			return err
		}
	}
	switch a.Overwrite {
	case "", "always", "if-changed", "if-newer", "never":
	default:
		return badArgs("overwrite must be always, if-changed, if-newer or never")
	}
	return CheckLimits(a.LimitUploadKiB, a.LimitDownloadKiB)
}

func (a *LsArgs) check() error {
	if !ValidSnapshotRef(a.SnapshotID) {
		return badArgs("ls needs a snapshot_id")
	}
	if a.Path != "" {
		return CheckTreePath(a.Path)
	}
	return nil
}

// check: the index is keyed by the snapshot's full ID.
func (a *IndexArgs) check() error {
	if len(a.SnapshotID) != 64 || !ValidSnapshotRef(a.SnapshotID) {
		return badArgs("index needs the full 64-hex snapshot_id")
	}
	return nil
}
