package runner

import (
	"errors"
	"regexp"
	"strconv"
	"strings"
	"sync"
)

// PruneArgs are the arguments of a prune (and of the prune that
// ForgetArgs.Prune starts).
type PruneArgs struct {
	// MaxUnused is restic's --max-unused: how much unused space to leave
	// ("5%", "100M", "unlimited"); empty: restic's default (5%).
	MaxUnused string
	DryRun    bool // --dry-run: report what would be done
}

// opPrune is `restic prune`. restic has no JSON output for prune in any
// version (0.14–0.18): the statistics block it prints in every version
//
//	to repack:             3 blobs / 296 B
//	this removes:          2 blobs / 92 B
//	to delete:             7 blobs / 1.871 KiB
//	total prune:           9 blobs / 1.961 KiB
//	remaining:            10 blobs / 1.889 KiB
//	unused size after prune: 0 B (0.00% of remaining size)
//	…
//	removing 2 old packs
//
// is parsed into PruneOutput; what cannot be read is left out (Output {}
// when nothing could), and the exit code alone decides the status.
type opPrune struct{}

func (opPrune) exclusive() {}

func (opPrune) argv(spec *Spec, _ resticVersion) ([]string, error) {
	args := []string{"prune"}
	extra, err := spec.Prune.flags()
	if err != nil {
		return nil, err
	}
	return append(args, extra...), nil
}

// flags are the prune options of a.
func (a *PruneArgs) flags() ([]string, error) {
	var args []string
	if a.MaxUnused != "" {
		if !validMaxUnused(a.MaxUnused) {
			return nil, errors.New("prune max unused " + strconv.Quote(a.MaxUnused) + ` refused: must be "unlimited", a percentage ("5%") or a size ("100M")`)
		}
		args = append(args, "--max-unused="+a.MaxUnused)
	}
	if a.DryRun {
		args = append(args, "--dry-run")
	}
	return args, nil
}

func validMaxUnused(s string) bool {
	return s == "unlimited" || checkPercent(s, true) || checkSize(s)
}

func (opPrune) progress() bool { return false }

func (opPrune) newParser(*Spec) parser { return &pruneParser{} }

func (opPrune) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	out.mu.Lock()
	refused := out.deleteRefused
	out.mu.Unlock()
	if refused != "" {
		failWith(res, "the repository refused to delete data (an append-only server?): "+refused)
		return
	}
	succeed(res, parserOf[pruneParser](out).result())
}

// PruneOutput is Result.Output of prune: restic's statistics, as far as
// they could be read from its text. Sizes are approximate: restic prints
// them rounded ("1.961 KiB").
type PruneOutput struct {
	ToRepack         *PruneCount `json:"to_repack,omitempty"`
	ThisRemoves      *PruneCount `json:"this_removes,omitempty"` // removed by repacking
	ToDelete         *PruneCount `json:"to_delete,omitempty"`
	TotalPrune       *PruneCount `json:"total_prune,omitempty"` // this_removes + to_delete
	Remaining        *PruneCount `json:"remaining,omitempty"`
	UnusedAfterBytes *uint64     `json:"unused_after_bytes,omitempty"`
	PacksRemoved     *uint64     `json:"packs_removed,omitempty"` // "removing N old packs" (not with DryRun)
}

// PruneCount is a number of blobs and their approximate size.
type PruneCount struct {
	Blobs uint64 `json:"blobs"`
	Bytes uint64 `json:"bytes"`
}

var (
	pruneCountRE   = regexp.MustCompile(`^(to repack|this removes|to delete|total prune|remaining):\s+(\d+) blobs / ([0-9.]+ [KMGTP]?i?B)$`)
	pruneUnusedRE  = regexp.MustCompile(`^unused size after prune: ([0-9.]+ [KMGTP]?i?B) \(`)
	pruneRemovedRE = regexp.MustCompile(`^removing (\d+) old packs$`)
)

// pruneParser reads prune's text from stdout (also after forget's JSON).
type pruneParser struct {
	noParser
	mu  sync.Mutex
	out PruneOutput
}

func (p *pruneParser) stdout(line []byte, kind lineKind, _ string) bool {
	if kind == lineText {
		p.text(strings.TrimSpace(cleanText(line)))
	}
	return false // keep it in the tail too
}

func (p *pruneParser) text(s string) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if m := pruneCountRE.FindStringSubmatch(s); m != nil {
		blobs, err1 := strconv.ParseUint(m[2], 10, 64)
		size, err2 := parseResticBytes(m[3])
		if err1 != nil || err2 != nil {
			return
		}
		c := &PruneCount{Blobs: blobs, Bytes: size}
		dst := map[string]**PruneCount{
			"to repack": &p.out.ToRepack, "this removes": &p.out.ThisRemoves, "to delete": &p.out.ToDelete,
			"total prune": &p.out.TotalPrune, "remaining": &p.out.Remaining,
		}[m[1]]
		if *dst == nil {
			*dst = c
		}
		return
	}
	if m := pruneUnusedRE.FindStringSubmatch(s); m != nil && p.out.UnusedAfterBytes == nil {
		if n, err := parseResticBytes(m[1]); err == nil {
			p.out.UnusedAfterBytes = &n
		}
		return
	}
	if m := pruneRemovedRE.FindStringSubmatch(s); m != nil && p.out.PacksRemoved == nil {
		if n, err := strconv.ParseUint(m[1], 10, 64); err == nil {
			p.out.PacksRemoved = &n
		}
	}
}

func (p *pruneParser) result() PruneOutput {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out
}

func (p *pruneParser) empty() bool {
	r := p.result()
	return r == PruneOutput{}
}

// parseResticBytes reads restic's ui.FormatBytes: "92 B", "1.961 KiB".
func parseResticBytes(s string) (uint64, error) {
	num, unit, ok := strings.Cut(s, " ")
	if !ok {
		return 0, errors.New("no unit")
	}
	f, err := strconv.ParseFloat(num, 64)
	if err != nil || f < 0 || f != f {
		return 0, errors.New("bad number")
	}
	mult := map[string]float64{"B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "PiB": 1 << 50}[unit]
	if mult == 0 {
		return 0, errors.New("bad unit")
	}
	v := f * mult
	if v >= 1<<63 {
		return 0, errors.New("too large")
	}
	return uint64(v + 0.5), nil
}
