package runner

import (
	"encoding/json"
	"sync"
)

// DiffArgs are the arguments of a diff: two snapshot IDs (8–64 hex).
type DiffArgs struct {
	SnapshotA, SnapshotB string
}

// DiffOutput is Result.Output of diff. Changes holds the first
// maxDiffChanges changes (Truncated tells when there were more;
// TotalChanges counts them all); Statistics is always complete.
type DiffOutput struct {
	Changes      []DiffChange   `json:"changes"`
	Truncated    bool           `json:"truncated"`
	TotalChanges int            `json:"total_changes"`
	Statistics   DiffStatistics `json:"statistics"`
}

// DiffChange is one changed path. Modifier: "+" added, "-" removed, "M"
// content changed, "T" type changed, "U" metadata only (with --metadata),
// "?" (0.17+) bitrot suspected.
type DiffChange struct {
	Path     string `json:"path"`
	Modifier string `json:"modifier"`
}

// DiffStatistics is restic's statistics message (the same in 0.14–0.18).
type DiffStatistics struct {
	SourceSnapshot string     `json:"source_snapshot"`
	TargetSnapshot string     `json:"target_snapshot"`
	ChangedFiles   int        `json:"changed_files"`
	Added          DiffCounts `json:"added"`
	Removed        DiffCounts `json:"removed"`
}

// DiffCounts are the added or removed items of a diff.
type DiffCounts struct {
	Files     int    `json:"files"`
	Dirs      int    `json:"dirs"`
	Others    int    `json:"others"`
	DataBlobs int    `json:"data_blobs"`
	TreeBlobs int    `json:"tree_blobs"`
	Bytes     uint64 `json:"bytes"`
}

const maxDiffChanges = 10000

// opDiff is `restic diff --json A B`: one "change" line per path, then
// one "statistics" line.
type opDiff struct{}

func (opDiff) progress() bool { return false }

func (opDiff) argv(spec *Spec, _ resticVersion) ([]string, error) {
	a := &spec.Diff
	if err := checkSnapshotID("snapshot A", a.SnapshotA, false); err != nil {
		return nil, err
	}
	if err := checkSnapshotID("snapshot B", a.SnapshotB, false); err != nil {
		return nil, err
	}
	return []string{"diff", "--json", a.SnapshotA, a.SnapshotB}, nil
}

func (opDiff) newParser(*Spec) parser { return &diffParser{} }

type diffParser struct {
	noParser
	mu    sync.Mutex
	out   DiffOutput
	stats bool
}

func (p *diffParser) stdout(line []byte, kind lineKind, typ string) bool {
	if kind != lineJSON {
		return false
	}
	switch typ {
	case "change":
		var c DiffChange
		if json.Unmarshal(line, &c) != nil {
			return true
		}
		p.mu.Lock()
		p.out.TotalChanges++
		if len(p.out.Changes) < maxDiffChanges {
			p.out.Changes = append(p.out.Changes, c)
		} else {
			p.out.Truncated = true
		}
		p.mu.Unlock()
		return true
	case "statistics":
		var s DiffStatistics
		if json.Unmarshal(line, &s) != nil {
			return false
		}
		p.mu.Lock()
		p.out.Statistics, p.stats = s, true
		p.mu.Unlock()
		return true
	}
	return false
}

func (opDiff) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	p := parserOf[diffParser](out)
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.stats {
		failWith(res, "restic printed no diff statistics")
		return
	}
	do := p.out
	do.Changes = nonNil(do.Changes)
	succeed(res, do)
}
