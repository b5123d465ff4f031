package runner

import (
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// UnlockArgs are the arguments of an unlock.
type UnlockArgs struct {
	// RemoveAll also removes the locks of running restic processes
	// (--remove-all). Only for an operator who knows no restic runs on the
	// repository anywhere.
	RemoveAll bool
}

// UnlockOutput is Result.Output of unlock. Removed is missing when restic
// did not say (0.14 prints "successfully removed locks" without a number).
type UnlockOutput struct {
	Removed *int `json:"removed,omitempty"`
}

// opUnlock is `restic unlock`: no JSON in any version. Recent restic
// prints "successfully removed N locks" when it removed any and nothing
// otherwise; 0.14 always prints "successfully removed locks".
type opUnlock struct{}

func (opUnlock) progress() bool { return false }

func (opUnlock) argv(spec *Spec, _ resticVersion) ([]string, error) {
	args := []string{"unlock"}
	if spec.Unlock.RemoveAll {
		args = append(args, "--remove-all")
	}
	return args, nil
}

var unlockRE = regexp.MustCompile(`^successfully removed (?:(\d+) )?locks?$`)

func (opUnlock) newParser(*Spec) parser { return &unlockParser{} }

type unlockParser struct {
	noParser
	mu      sync.Mutex
	said    bool // a "successfully removed" line came
	removed *int
}

func (p *unlockParser) stdout(line []byte, kind lineKind, _ string) bool {
	if kind != lineText {
		return false
	}
	m := unlockRE.FindStringSubmatch(strings.TrimSpace(cleanText(line)))
	if m == nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.said = true
	if n, err := strconv.Atoi(m[1]); err == nil {
		p.removed = &n
	}
	return false
}

func (opUnlock) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	p := parserOf[unlockParser](out)
	p.mu.Lock()
	defer p.mu.Unlock()
	var uo UnlockOutput
	switch {
	case p.removed != nil:
		uo.Removed = p.removed
	case !p.said:
		// The versions that count say nothing when there was nothing to
		// remove; the ones that do not count always print their line.
		zero := 0
		uo.Removed = &zero
	}
	succeed(res, uo)
}
