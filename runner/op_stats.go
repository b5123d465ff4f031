package runner

import (
	"fmt"
)

// StatsArgs are the arguments of a stats run.
type StatsArgs struct {
	// Mode is "restore-size" (default when empty: the size of the files
	// a restore would write) or "raw-data" (the size of the deduplicated,
	// compressed data in the repository).
	Mode string
	// SnapshotIDs limits the statistics to these snapshots (8–64 hex or
	// "latest"); empty: all.
	SnapshotIDs []string
}

// opStats is `restic stats --json`: one object, which is Output as restic
// gives it: restore-size {total_size, total_file_count, snapshots_count};
// raw-data {total_size, total_blob_count, snapshots_count, and from 0.15
// total_uncompressed_size, compression_ratio, compression_progress,
// compression_space_saving}.
type opStats struct{}

func (opStats) progress() bool     { return false }
func (opStats) maxStdoutLine() int { return bigOutputMax }

func (opStats) argv(spec *Spec, _ resticVersion) ([]string, error) {
	a := &spec.Stats
	args := []string{"stats", "--json"}
	switch a.Mode {
	case "", "restore-size":
	case "raw-data":
		args = append(args, "--mode=raw-data")
	default:
		return nil, fmt.Errorf("stats mode %q refused: must be \"restore-size\" or \"raw-data\"", a.Mode)
	}
	for _, id := range a.SnapshotIDs {
		if err := checkSnapshotID("snapshot ID", id, true); err != nil {
			return nil, err
		}
	}
	if len(a.SnapshotIDs) > 0 {
		args = append(args, "--")
		args = append(args, a.SnapshotIDs...)
	}
	return args, nil
}

func (opStats) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	doc, err := bigDocument(out, '{', "statistics")
	if err != nil {
		failWith(res, err.Error())
		return
	}
	res.Status = StatusSucceeded
	res.Output = append([]byte(nil), doc...)
}
