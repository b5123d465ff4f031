package runner

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// CheckArgs are the arguments of a check.
type CheckArgs struct {
	// ReadDataSubset also reads and verifies part of the data: "n/t"
	// (group n of t), "x%" or a size ("1G"). Empty: structure only.
	ReadDataSubset string
}

// CheckOutput is Result.Output of check, also when check found errors
// (status failed). NumErrors is restic's count from 0.18; before (text
// output), the number of error messages restic printed.
type CheckOutput struct {
	OK                 bool     `json:"ok"`
	NumErrors          int      `json:"num_errors"`
	BrokenPacks        []string `json:"broken_packs,omitempty"`
	SuggestRepairIndex bool     `json:"suggest_repair_index,omitempty"`
	SuggestPrune       bool     `json:"suggest_prune,omitempty"`
	Messages           []string `json:"messages"` // restic's error messages, at most maxCheckMessages
}

const maxCheckMessages = 100

// opCheck is `restic check --json`. 0.18 prints a summary {num_errors,
// broken_packs, suggest_repair_index, suggest_prune} on stdout and its
// errors as JSON on stderr ({"message_type":"error","message":…}); 0.14–0.17
// ignore --json: "no errors were found" on stdout, errors as text on
// stderr and "Fatal: repository contains errors". Both exit 1 on errors.
type opCheck struct{}

func (opCheck) exclusive()     {}
func (opCheck) progress() bool { return false }

var subsetGroupRE = regexp.MustCompile(`^([0-9]{1,9})/([0-9]{1,9})$`)

func (opCheck) argv(spec *Spec, _ resticVersion) ([]string, error) {
	args := []string{"check", "--json"}
	if s := spec.Check.ReadDataSubset; s != "" {
		if !validSubset(s) {
			return nil, fmt.Errorf("read data subset %q refused: must be \"n/t\" (1 <= n <= t), a percentage (\"10%%\") or a size (\"1G\")", s)
		}
		args = append(args, "--read-data-subset="+s)
	}
	return args, nil
}

func validSubset(s string) bool {
	if m := subsetGroupRE.FindStringSubmatch(s); m != nil {
		n, _ := strconv.Atoi(m[1])
		t, _ := strconv.Atoi(m[2])
		return n >= 1 && n <= t
	}
	if strings.HasSuffix(s, "%") {
		return checkPercent(s, false)
	}
	return checkSize(s) && strings.Trim(s, "0bBkKmMgGtT") != ""
}

func (opCheck) newParser(*Spec) parser { return &checkParser{} }

// checkParser collects check's error messages (JSON or text on stderr)
// and notes the text markers of restic before 0.18.
type checkParser struct {
	mu        sync.Mutex
	messages  []string
	count     int  // messages seen (text: lines not indented)
	noErrors  bool // "no errors were found"
	hasErrors bool // "repository contains errors"
}

func (p *checkParser) stdout(line []byte, kind lineKind, _ string) bool {
	if kind == lineText && strings.TrimSpace(cleanText(line)) == "no errors were found" {
		p.mu.Lock()
		p.noErrors = true
		p.mu.Unlock()
	}
	return false
}

func (p *checkParser) stderr(line []byte, kind lineKind, typ string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if kind == lineJSON {
		if typ != "error" {
			return
		}
		var m struct {
			Message string `json:"message"`
		}
		if json.Unmarshal(line, &m) == nil {
			p.add(strings.TrimRight(m.Message, "\n"), true)
		}
		return
	}
	text := strings.TrimRight(cleanText(line), " \t")
	switch {
	case strings.TrimSpace(text) == "":
	case strings.Contains(text, "repository contains errors"):
		p.hasErrors = true
	case strings.HasPrefix(text, "Load(") || strings.HasPrefix(text, "Fatal:"):
		// Backend retries ("Load(<data/…>, 0, 0) returned error, retrying
		// after …") and the final message: not findings.
	default:
		p.add(text, !strings.HasPrefix(text, " "))
	}
}

// add keeps a message; counted tells whether it is a new error (the
// indented lines of "error for tree X:" belong to the one before).
func (p *checkParser) add(msg string, counted bool) {
	msg = strings.TrimSpace(msg)
	if msg == "" {
		return
	}
	if counted {
		p.count++
	}
	if len(p.messages) < maxCheckMessages {
		p.messages = append(p.messages, clip(msg))
	}
}

// checkSummary is restic 0.18's summary.
type checkSummary struct {
	NumErrors          int      `json:"num_errors"`
	BrokenPacks        []string `json:"broken_packs"`
	SuggestRepairIndex bool     `json:"suggest_repair_index"`
	SuggestPrune       bool     `json:"suggest_prune"`
}

// result builds the output; ok is false when check did not get as far as
// reporting (then the failure is all there is).
func (opCheck) result(out *output, code int) (CheckOutput, bool) {
	p := parserOf[checkParser](out)
	summary, _ := out.summaryAndID()
	p.mu.Lock()
	defer p.mu.Unlock()
	co := CheckOutput{Messages: append([]string{}, p.messages...)}
	if summary != nil {
		var s checkSummary
		if json.Unmarshal(summary, &s) != nil {
			return co, false
		}
		co.NumErrors, co.BrokenPacks = s.NumErrors, s.BrokenPacks
		co.SuggestRepairIndex, co.SuggestPrune = s.SuggestRepairIndex, s.SuggestPrune
		co.OK = code == exitOK && s.NumErrors == 0
		return co, true
	}
	switch {
	case code == exitOK:
		co.OK = true
		return co, true
	case p.hasErrors:
		co.NumErrors = max(p.count, 1)
		return co, true
	}
	return co, false
}

func (o opCheck) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		o.failedOutput(out, code, res)
		return
	}
	co, ok := o.result(out, code)
	if !ok {
		failWith(res, "cannot read restic's check summary")
		return
	}
	if !co.OK {
		// Exit code 0 with errors in the summary: not seen, but do not
		// call it a success.
		res.Status = StatusFailed
		res.Error = fmt.Sprintf("check found %d errors", co.NumErrors)
		res.Output = mustJSON(co)
		return
	}
	succeed(res, co)
}

func (o opCheck) failedOutput(out *output, code int, res *Result) {
	if res.Cause != "" {
		// Check did not run. (0.18 still prints a summary with
		// num_errors 1 when it cannot lock the repository.)
		return
	}
	if co, ok := o.result(out, code); ok {
		res.Output = mustJSON(co)
	}
}
