package runner

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"sync"
	"time"
)

// ForgetArgs are the arguments of a forget. At least one keep rule is
// required: restic 0.18 refuses a forget without one, older versions
// silently keep everything.
type ForgetArgs struct {
	KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly int // 0: rule not used
	// KeepWithin keeps the snapshots younger than this restic duration,
	// relative to the newest snapshot: numbers with units y, m, d, h
	// ("30d", "1y6m", "12h").
	KeepWithin string
	Tags       []string // only snapshots with these tags (--tag; "a,b" means both a and b)
	Hosts      []string // only snapshots of these hosts (--host)
	// Prune removes the data no snapshot uses any more right after (with
	// Spec.Prune's options).
	Prune  bool
	DryRun bool // --dry-run: report what would be removed, remove nothing
	// Guard, when set, previews the forget first and holds it (Result
	// status held, nothing deleted) when it would remove too much or finds
	// snapshots dated in the future.
	Guard *ForgetGuard
}

// ForgetGuard bounds a forget (see ForgetArgs.Guard).
type ForgetGuard struct {
	// MaxRemovePercent of the snapshots in scope may go (0 means 50).
	MaxRemovePercent int
	// NotAfter: a snapshot dated later is forged or its host's clock is
	// wrong; a retention policy applied to it would keep the wrong ones.
	NotAfter time.Time
}

// ForgetOutput is Result.Output of forget.
type ForgetOutput struct {
	Groups []ForgetGroup `json:"groups"`
	// Prune holds what could be read of prune's text (ForgetArgs.Prune).
	Prune *PruneOutput `json:"prune,omitempty"`
}

// ForgetGroup is one group of snapshots restic applied the policy to (by
// host and paths).
type ForgetGroup struct {
	Host    string         `json:"host"`
	Paths   []string       `json:"paths"`
	Tags    []string       `json:"tags"`
	Keep    []string       `json:"keep"`   // full snapshot IDs
	Remove  []string       `json:"remove"` // full snapshot IDs
	Reasons []ForgetReason `json:"reasons"`
	// Times are the kept and removed snapshots' times (restic's RFC 3339).
	Times map[string]string `json:"times,omitempty"`
}

// ForgetReason tells why a snapshot was kept.
type ForgetReason struct {
	ID      string   `json:"id"` // full snapshot ID; "" if it could not be matched
	Matches []string `json:"matches"`
}

// opForget is `restic forget --json`: one JSON array of groups on one line
// (then, with --prune, prune's text). Reasons carry the snapshot's id from
// 0.17; before, their snapshot is matched to the kept ones by time and tree.
type opForget struct{}

func (opForget) exclusive()         {}
func (opForget) maxStdoutLine() int { return bigOutputMax }
func (opForget) progress() bool     { return false }

var durationRE = regexp.MustCompile(`^(?:[0-9]{1,6}[ymdh])+$`)

// checkDuration validates a restic duration ("1y6m", "30d", "12h").
func checkDuration(s string) error {
	if !durationRE.MatchString(s) {
		return fmt.Errorf("keep within %q refused: must be numbers with units y, m, d or h, like \"30d\" or \"1y6m\"", s)
	}
	seen, total := map[byte]bool{}, 0
	num := 0
	for i := 0; i < len(s); i++ {
		c := s[i]
		if '0' <= c && c <= '9' {
			num = num*10 + int(c-'0')
			continue
		}
		if seen[c] {
			return fmt.Errorf("keep within %q refused: unit %q given twice", s, c)
		}
		seen[c] = true
		total += num
		num = 0
	}
	if total == 0 {
		return fmt.Errorf("keep within %q refused: keeps nothing", s)
	}
	return nil
}

func (opForget) argv(spec *Spec, _ resticVersion) ([]string, error) {
	f := &spec.Forget
	args := []string{"forget", "--json"}
	rules := 0
	for _, k := range []struct {
		flag string
		n    int
	}{
		{"--keep-last", f.KeepLast}, {"--keep-hourly", f.KeepHourly}, {"--keep-daily", f.KeepDaily},
		{"--keep-weekly", f.KeepWeekly}, {"--keep-monthly", f.KeepMonthly}, {"--keep-yearly", f.KeepYearly},
	} {
		switch {
		case k.n < 0:
			return nil, fmt.Errorf("%s %d refused: must not be negative", k.flag[2:], k.n)
		case k.n > 0:
			rules++
			args = append(args, k.flag+"="+strconv.Itoa(k.n))
		}
	}
	if f.KeepWithin != "" {
		if err := checkDuration(f.KeepWithin); err != nil {
			return nil, err
		}
		rules++
		args = append(args, "--keep-within="+f.KeepWithin)
	}
	if rules == 0 {
		return nil, errors.New("forget refused: no keep rule (KeepLast, KeepHourly, KeepDaily, KeepWeekly, KeepMonthly, KeepYearly or KeepWithin); " +
			"restic 0.18 fails without one and older versions remove nothing")
	}
	filters, err := filterArgs(f.Hosts, f.Tags, nil)
	if err != nil {
		return nil, err
	}
	args = append(args, filters...)
	if f.DryRun {
		args = append(args, "--dry-run")
	}
	if f.Prune {
		args = append(args, "--prune")
		extra, err := spec.Prune.flags()
		if err != nil {
			return nil, err
		}
		for _, a := range extra {
			if a != "--dry-run" { // forget's own --dry-run covers prune
				args = append(args, a)
			}
		}
	}
	return args, nil
}

func (opForget) newParser(*Spec) parser { return &forgetParser{} }

// forgetParser keeps the first JSON array and reads prune's text after it.
type forgetParser struct {
	noParser
	mu    sync.Mutex
	doc   []byte
	prune pruneParser
}

func (p *forgetParser) stdout(line []byte, kind lineKind, typ string) bool {
	if kind == lineJSON {
		p.mu.Lock()
		defer p.mu.Unlock()
		if t := jsonValue(line, '['); t != nil && p.doc == nil {
			p.doc = bytes.Clone(t)
			return true
		}
		return false
	}
	return p.prune.stdout(line, kind, typ)
}

func (p *forgetParser) document() []byte {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.doc
}

// resticForgetGroup is one element of restic's forget output.
type resticForgetGroup struct {
	Tags    []string           `json:"tags"`
	Host    string             `json:"host"`
	Paths   []string           `json:"paths"`
	Keep    []snapshotRef      `json:"keep"`
	Remove  []snapshotRef      `json:"remove"`
	Reasons []resticKeepReason `json:"reasons"`
}

// snapshotRef is what the runner needs of a snapshot in restic's output.
type snapshotRef struct {
	ID   string `json:"id"`
	Time string `json:"time"`
	Tree string `json:"tree"`
}

type resticKeepReason struct {
	Snapshot snapshotRef `json:"snapshot"`
	Matches  []string    `json:"matches"`
}

func (o opForget) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		o.failedOutput(out, code, res)
		return
	}
	p := parserOf[forgetParser](out)
	doc := p.document()
	out.mu.Lock()
	cut, refused := out.stdoutCut, out.deleteRefused
	out.mu.Unlock()
	if refused != "" {
		failWith(res, "the repository refused to delete snapshots (an append-only server?): "+refused)
		return
	}
	if doc == nil && cut {
		failWith(res, fmt.Sprintf("restic's forget output is larger than %d MiB", bigOutputMax>>20))
		return
	}
	// No document: restic printed nothing, no snapshot matched.
	fo := ForgetOutput{Groups: []ForgetGroup{}}
	if doc != nil {
		groups, err := parseForget(doc)
		if err != nil {
			failWith(res, "cannot read restic's forget output: "+err.Error())
			return
		}
		fo.Groups = groups
	}
	if !p.prune.empty() {
		po := p.prune.result()
		fo.Prune = &po
	}
	succeed(res, fo)
}

func parseForget(doc []byte) ([]ForgetGroup, error) {
	var raw []resticForgetGroup
	if err := json.Unmarshal(doc, &raw); err != nil {
		return nil, err
	}
	groups := make([]ForgetGroup, 0, len(raw))
	for _, g := range raw {
		fg := ForgetGroup{
			Host: g.Host, Paths: nonNil(g.Paths), Tags: nonNil(g.Tags),
			Keep: []string{}, Remove: []string{}, Reasons: []ForgetReason{}, Times: map[string]string{},
		}
		byTimeTree := map[string]string{}
		for _, s := range g.Keep {
			if !isFullID(s.ID) {
				return nil, fmt.Errorf("kept snapshot without a valid id (%q)", s.ID)
			}
			fg.Keep = append(fg.Keep, s.ID)
			fg.Times[s.ID] = s.Time
			byTimeTree[s.Time+"\x00"+s.Tree] = s.ID
		}
		for _, s := range g.Remove {
			if !isFullID(s.ID) {
				return nil, fmt.Errorf("removed snapshot without a valid id (%q)", s.ID)
			}
			fg.Remove = append(fg.Remove, s.ID)
			fg.Times[s.ID] = s.Time
		}
		for _, r := range g.Reasons {
			id := r.Snapshot.ID // 0.17+
			if !isFullID(id) {
				id = byTimeTree[r.Snapshot.Time+"\x00"+r.Snapshot.Tree]
			}
			fg.Reasons = append(fg.Reasons, ForgetReason{ID: id, Matches: nonNil(r.Matches)})
		}
		groups = append(groups, fg)
	}
	return groups, nil
}

func isFullID(s string) bool { return len(s) == 64 && isHex(s) }

func nonNil[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

// failedOutput: with --prune, restic has forgotten the snapshots when the
// prune that follows fails; the groups tell which.
func (opForget) failedOutput(out *output, code int, res *Result) {
	if res.Cause != "" {
		return
	}
	p := parserOf[forgetParser](out)
	doc := p.document()
	if doc == nil {
		return
	}
	groups, err := parseForget(doc)
	if err != nil {
		return
	}
	fo := ForgetOutput{Groups: groups}
	if !p.prune.empty() {
		po := p.prune.result()
		fo.Prune = &po
	}
	res.Output = mustJSON(fo)
}
