package runner

import (
	"encoding/json"
	"fmt"
	"time"
)

// SnapshotsArgs are the arguments of a snapshots listing: filters, all
// optional.
type SnapshotsArgs struct {
	Hosts []string // --host
	Tags  []string // --tag ("a,b": snapshots with both a and b)
	Paths []string // --path (the snapshot's backed-up paths)
}

// Snapshot is one snapshot, as restic lists it (snapshots, ls).
type Snapshot struct {
	ID             string          `json:"id"`       // 64 hex
	ShortID        string          `json:"short_id"` // 8 hex
	Time           time.Time       `json:"time"`
	Hostname       string          `json:"hostname"`
	Username       string          `json:"username,omitempty"`
	Paths          []string        `json:"paths"`
	Tags           []string        `json:"tags,omitempty"`
	Excludes       []string        `json:"excludes,omitempty"`
	Parent         string          `json:"parent,omitempty"`
	Tree           string          `json:"tree,omitempty"`
	Original       string          `json:"original,omitempty"`
	ProgramVersion string          `json:"program_version,omitempty"` // restic 0.16+
	Summary        json.RawMessage `json:"summary,omitempty"`         // the backup's summary, restic 0.17+
}

// opSnapshots is `restic snapshots --json`: one JSON array on one line
// ("[]" when empty), possibly many MB: read with bigOutputMax. Output is
// []Snapshot, normalised: every entry has a full id and its short_id.
type opSnapshots struct{}

func (opSnapshots) progress() bool     { return false }
func (opSnapshots) maxStdoutLine() int { return bigOutputMax }

func (opSnapshots) argv(spec *Spec, _ resticVersion) ([]string, error) {
	a := &spec.Snapshots
	filters, err := filterArgs(a.Hosts, a.Tags, a.Paths)
	if err != nil {
		return nil, err
	}
	return append([]string{"snapshots", "--json"}, filters...), nil
}

func (opSnapshots) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	doc, err := bigDocument(out, '[', "snapshots")
	if err != nil {
		failWith(res, err.Error())
		return
	}
	snaps, err := parseSnapshots(doc)
	if err != nil {
		failWith(res, "cannot read restic's snapshot list: "+err.Error())
		return
	}
	succeed(res, snaps)
}

func parseSnapshots(doc []byte) ([]Snapshot, error) {
	var snaps []Snapshot
	if err := json.Unmarshal(doc, &snaps); err != nil {
		return nil, err
	}
	for i := range snaps {
		if err := normaliseSnapshot(&snaps[i]); err != nil {
			return nil, err
		}
	}
	return nonNil(snaps), nil
}

func normaliseSnapshot(s *Snapshot) error {
	if !isFullID(s.ID) {
		return fmt.Errorf("snapshot without a valid id (%q)", s.ID)
	}
	if s.ShortID != s.ID[:8] {
		s.ShortID = s.ID[:8]
	}
	s.Paths = nonNil(s.Paths)
	return nil
}

// bigDocument returns the last JSON value restic printed on stdout without
// a message_type, if it starts with c, or explains why there is none.
func bigDocument(out *output, c byte, what string) ([]byte, error) {
	out.mu.Lock()
	doc, cut := out.untyped, out.stdoutCut
	out.mu.Unlock()
	if t := jsonValue(doc, c); t != nil {
		return t, nil
	}
	if cut {
		return nil, fmt.Errorf("restic's %s output is larger than %d MiB", what, bigOutputMax>>20)
	}
	return nil, fmt.Errorf("restic printed no %s", what)
}
