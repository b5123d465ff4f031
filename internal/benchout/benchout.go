// Package benchout is how benchmarks and the fleet simulator hand their
// figures to `make bench`'s one table (cmd/benchtable): each writes a JSON
// file into the directory named by RM_BENCH_OUT, and does nothing when it
// is unset, so a benchmark run by hand prints as before and writes nothing.
//
// A file, $RM_BENCH_OUT/<name>.json, holds one run of one benchmark:
//
//	{
//	  "format": "restic-manager/benchout/1",
//	  "name": "browse-wide-200000",
//	  "when": "2026-12-07T15:40:00Z",
//	  "figures": [
//	    {
//	      "id": "browse.wide-200000.browsable",
//	      "group": "browsing",
//	      "what": "first browse request → folder lists (wide, 200000 files)",
//	      "value": 3.1, "unit": "s",
//	      "reference": {"what": "restic ls --json of the snapshot", "value": 2.8, "unit": "s"},
//	      "target": {"op": "<=", "value": 1.2, "unit": "x", "relative": true},
//	      "load": {"start": 0.71, "end": 1.02},
//	      "command": "RM_BENCH_NORACE=1 go test ./e2e -run '^$' -bench '^BenchmarkSnapshotBrowse$' -benchtime 1x"
//	    }
//	  ]
//	}
//
// A figure's value is what was measured, in its unit. Its reference, when
// it has one, is the same quantity measured in the same run by something
// other than restic-manager (`restic ls`, bare restic, a bare broker): on
// a shared machine only the two side by side mean anything. Its target,
// when the code or docs/scale.md state one, is a bound on the value (in
// the value's unit) or, when relative, on value ÷ reference (unit "x" for
// a factor, "%" for a percentage). The load is the machine's one-minute
// load average at the start and the end of the measurement. The command
// reproduces the run, with the environment variables that sized it.
package benchout

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Format marks a file as this package's: cmd/benchtable skips the other
// JSON files in the directory (fleetsim's own report, for one).
const Format = "restic-manager/benchout/1"

// EnvDir is the environment variable naming the output directory.
const EnvDir = "RM_BENCH_OUT"

// Groups of figures, in the order the table shows them.
const (
	GroupSimulator = "simulator"
	GroupDispatch  = "dispatch"
	GroupBrowsing  = "browsing"
	GroupStore     = "store"
	GroupPolicies  = "policies/report"
	GroupAgent     = "agent"
	GroupBackends  = "backends"
	GroupSources   = "sources/drills"
)

// GroupOrder is the table's order of groups; others follow, sorted.
var GroupOrder = []string{GroupSimulator, GroupDispatch, GroupBrowsing, GroupStore, GroupPolicies, GroupAgent, GroupBackends, GroupSources}

// File is one benchmark run's figures.
type File struct {
	Format  string    `json:"format"`
	Name    string    `json:"name"`
	When    time.Time `json:"when"`
	Figures []Figure  `json:"figures"`
}

// Figure is one measured figure.
type Figure struct {
	ID        string     `json:"id"`
	Group     string     `json:"group"`
	What      string     `json:"what"`
	Value     float64    `json:"value"`
	Unit      string     `json:"unit"`
	Reference *Reference `json:"reference,omitempty"`
	Target    *Target    `json:"target,omitempty"`
	Load      *Load      `json:"load,omitempty"`
	Command   string     `json:"command"`
	Note      string     `json:"note,omitempty"`
}

// Reference is the same quantity measured in the same run without
// restic-manager in the way.
type Reference struct {
	What  string  `json:"what"`
	Value float64 `json:"value"`
	Unit  string  `json:"unit"`
}

// Target is a bound: Op is "<=" or ">="; with Relative it bounds
// value ÷ reference (Unit "x") or 100 × value ÷ reference (Unit "%"),
// else the value itself, in the figure's unit.
type Target struct {
	Op       string  `json:"op"`
	Value    float64 `json:"value"`
	Unit     string  `json:"unit"`
	Relative bool    `json:"relative,omitempty"`
}

// AtMost and AtLeast are absolute targets.
func AtMost(v float64, unit string) *Target  { return &Target{Op: "<=", Value: v, Unit: unit} }
func AtLeast(v float64, unit string) *Target { return &Target{Op: ">=", Value: v, Unit: unit} }

// AtMostTimes bounds value ÷ reference ("≤ 1.2×").
func AtMostTimes(x float64) *Target { return &Target{Op: "<=", Value: x, Unit: "x", Relative: true} }

// AtLeastPercent bounds 100 × value ÷ reference ("≥ 75 %").
func AtLeastPercent(p float64) *Target {
	return &Target{Op: ">=", Value: p, Unit: "%", Relative: true}
}

// String is the target as the tables print it: "≤ 10 s", "≥ 75 %", "≤ 1.2×".
func (t *Target) String() string {
	if t == nil {
		return ""
	}
	op := t.Op
	switch t.Op {
	case "<=":
		op = "≤"
	case ">=":
		op = "≥"
	}
	if t.Unit == "x" {
		return op + " " + Num(t.Value) + "×"
	}
	return strings.TrimSpace(op + " " + Num(t.Value) + " " + t.Unit)
}

// Check compares a figure with its target. ok is false when there is
// nothing to compare (no target, or a relative one without a reference).
// compared is what was held against the bound (the value, or the ratio
// for a relative target); by is how far it is from the bound, as a
// fraction of the bound: positive when missed, zero or negative when met.
func (f Figure) Check() (met bool, compared, by float64, ok bool) {
	t := f.Target
	if t == nil {
		return false, 0, 0, false
	}
	compared = f.Value
	if t.Relative {
		if f.Reference == nil || f.Reference.Value == 0 {
			return false, 0, 0, false
		}
		compared = f.Value / f.Reference.Value
		if t.Unit == "%" {
			compared *= 100
		}
	}
	switch t.Op {
	case "<=":
		met = compared <= t.Value
		by = compared - t.Value
	case ">=":
		met = compared >= t.Value
		by = t.Value - compared
	default:
		return false, 0, 0, false
	}
	if t.Value != 0 {
		by /= math.Abs(t.Value)
	}
	return met, compared, by, true
}

// Load is the one-minute load average at the start and end of a run.
type Load struct {
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// LoadAvg is the one-minute load average (/proc/loadavg), or -1 where
// there is none: on a shared machine every figure moves with it.
func LoadAvg() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return -1
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return -1
	}
	v, err := strconv.ParseFloat(f[0], 64)
	if err != nil {
		return -1
	}
	return v
}

// LoadSince is the load from start (an earlier LoadAvg) to now; nil when
// either is unknown.
func LoadSince(start float64) *Load {
	end := LoadAvg()
	if start < 0 || end < 0 {
		return nil
	}
	return &Load{Start: start, End: end}
}

// GoTest is the command that reproduces a benchmark: the environment
// variables among env that are set (the ones that size or build it), then
// `go test PKG -run '^$' -bench BENCH -benchtime BENCHTIME`.
func GoTest(pkg, bench, benchtime string, env ...string) string {
	var parts []string
	for _, k := range env {
		if v, ok := os.LookupEnv(k); ok {
			parts = append(parts, k+"="+v)
		}
	}
	parts = append(parts, "go test", pkg, "-run '^$'", "-bench '"+bench+"'", "-benchtime", benchtime)
	return strings.Join(parts, " ")
}

// Enabled reports whether RM_BENCH_OUT is set (figures are written).
func Enabled() bool { return os.Getenv(EnvDir) != "" }

// Write writes figures as $RM_BENCH_OUT/<name>.json, replacing an earlier
// file of that name (a benchmark the framework runs again with a larger N
// leaves its last run). It does nothing when RM_BENCH_OUT is unset.
func Write(name string, figures []Figure) error {
	dir := os.Getenv(EnvDir)
	if dir == "" {
		return nil
	}
	return WriteDir(dir, name, figures)
}

// WriteDir writes figures as dir/<name>.json.
func WriteDir(dir, name string, figures []Figure) error {
	if name == "" || strings.ContainsAny(name, `/\`) {
		return fmt.Errorf("benchout: bad name %q", name)
	}
	f := File{Format: Format, Name: name, When: time.Now().UTC(), Figures: figures}
	if f.Figures == nil {
		f.Figures = []Figure{}
	}
	b, err := json.MarshalIndent(f, "", "  ")
	if err != nil {
		return fmt.Errorf("benchout: encode %s: %w", name, err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("benchout: %w", err)
	}
	// Written to a temporary file and renamed: the table never reads half
	// a file, whatever else runs in the directory.
	tmp, err := os.CreateTemp(dir, "."+name+"-*.tmp")
	if err != nil {
		return fmt.Errorf("benchout: write %s: %w", name, err)
	}
	if _, err := tmp.Write(append(b, '\n')); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("benchout: write %s: %w", name, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("benchout: write %s: %w", name, err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("benchout: write %s: %w", name, err)
	}
	if err := os.Rename(tmp.Name(), filepath.Join(dir, name+".json")); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("benchout: write %s: %w", name, err)
	}
	return nil
}

// ReadDir reads every file of this format in dir, sorted by name with
// numbers in it compared as numbers (listjobs-5000 before listjobs-10000);
// skipped lists the other JSON files (not this package's).
func ReadDir(dir string) (files []File, skipped []string, err error) {
	paths, err := filepath.Glob(filepath.Join(dir, "*.json"))
	if err != nil {
		return nil, nil, fmt.Errorf("benchout: list %s: %w", dir, err)
	}
	sort.Slice(paths, func(i, j int) bool { return naturalLess(paths[i], paths[j]) })
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, nil, fmt.Errorf("benchout: %w", err)
		}
		var f File
		if err := json.Unmarshal(b, &f); err != nil || f.Format != Format {
			skipped = append(skipped, p)
			continue
		}
		files = append(files, f)
	}
	return files, skipped, nil
}

// naturalLess orders strings with their runs of digits compared as
// numbers.
func naturalLess(a, b string) bool {
	for a != "" && b != "" {
		da, db := digits(a), digits(b)
		if da > 0 && db > 0 {
			na, nb := strings.TrimLeft(a[:da], "0"), strings.TrimLeft(b[:db], "0")
			if len(na) != len(nb) {
				return len(na) < len(nb)
			}
			if na != nb {
				return na < nb
			}
			a, b = a[da:], b[db:]
			continue
		}
		if a[0] != b[0] {
			return a[0] < b[0]
		}
		a, b = a[1:], b[1:]
	}
	return len(a) < len(b)
}

// digits is the length of s's leading run of ASCII digits.
func digits(s string) int {
	n := 0
	for n < len(s) && s[n] >= '0' && s[n] <= '9' {
		n++
	}
	return n
}

// Num formats a number with about three significant digits, without
// exponent or trailing zeros: 0.123, 1.23, 1.2, 12.3, 123, 12345.
func Num(v float64) string {
	a := math.Abs(v)
	prec := 0
	switch {
	case a >= 100 || a == 0:
	case a >= 10:
		prec = 1
	case a >= 1:
		prec = 2
	default:
		// Three significant digits below 1: 0.123, 0.0123.
		prec = 2 - int(math.Floor(math.Log10(a)))
	}
	s := strconv.FormatFloat(v, 'f', prec, 64)
	if strings.Contains(s, ".") {
		s = strings.TrimRight(strings.TrimRight(s, "0"), ".")
	}
	return s
}

// MiBToMB converts MiB (what /proc reports, ÷ 2²⁰) to MB (10⁶ B, what
// the memory targets are stated in).
func MiBToMB(mib float64) float64 { return mib * (1 << 20) / 1e6 }
