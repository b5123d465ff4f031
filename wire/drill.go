package wire

import "fmt"

// JobDrill is a restore drill: the agent restores a sample of a snapshot
// into a scratch directory, verifies it, runs an optional probe hook,
// measures the restore rate and removes the scratch data
// (ARCHITECTURE.md, "Restore drills").
const JobDrill = "drill"

// Drill defaults and bounds.
const (
	DefaultDrillFiles = 100
	DefaultDrillBytes = 256 << 20
	MaxDrillFiles     = 10_000
	MaxDrillBytes     = 64 << 30
	MaxDrillPaths     = 100
	// MaxDrillReported bounds the sample and mismatch lists of a drill's
	// output.
	MaxDrillReported = 1000
)

// DrillArgs: drill {snapshot_id, sample_files, sample_bytes, paths,
// target_host_id, probe}.
type DrillArgs struct {
	// SnapshotID drills that snapshot; empty: the latest snapshot of
	// Hostname and the latest of each of its sources.
	SnapshotID  string `json:"snapshot_id,omitempty"`
	SampleFiles int    `json:"sample_files,omitempty"`
	SampleBytes int64  `json:"sample_bytes,omitempty"`
	// Paths are restored in addition to the random sample.
	Paths []string `json:"paths,omitempty"`
	// TargetHostID runs the drill on another host bound to the repository
	// (a dedicated drill host); the console sends the job there.
	TargetHostID string `json:"target_host_id,omitempty"`
	// Probe names a hook of the agent's configuration whose after command
	// runs against the restored data (RM_DRILL_DIR).
	Probe string `json:"probe,omitempty"`
	// HostID and Hostname are set by the console: the host whose backup is
	// drilled and its restic host name (the snapshots' --host). A drill on
	// another host compares no live files.
	HostID   string `json:"host_id,omitempty"`
	Hostname string `json:"hostname,omitempty"`
}

func (a *DrillArgs) check() error {
	if a.SnapshotID != "" && !ValidSnapshotRef(a.SnapshotID) {
		return badArgs("drill snapshot_id %q is not 8-64 hex characters or \"latest\"", a.SnapshotID)
	}
	if a.SampleFiles < 0 || a.SampleFiles > MaxDrillFiles {
		return badArgs("sample_files must be 0 (default %d) to %d", DefaultDrillFiles, MaxDrillFiles)
	}
	if a.SampleBytes < 0 || a.SampleBytes > MaxDrillBytes {
		return badArgs("sample_bytes must be 0 (default %d) to %d", DefaultDrillBytes, int64(MaxDrillBytes))
	}
	if len(a.Paths) > MaxDrillPaths {
		return badArgs("at most %d drill paths", MaxDrillPaths)
	}
	for _, p := range a.Paths {
		if err := CheckTreePath(p); err != nil {
			return err
		}
	}
	if a.TargetHostID != "" && !ValidID(a.TargetHostID) || a.HostID != "" && !ValidID(a.HostID) {
		return badArgs("drill host ids must be host ids")
	}
	if a.Probe != "" && !ValidCommandName(a.Probe) {
		return badArgs("probe %q is not a hook name", a.Probe)
	}
	if a.Hostname != "" {
		if err := CheckArg(a.Hostname); err != nil {
			return err
		}
	}
	return nil
}

// Files and bytes of the sample, with the defaults applied.
func (a *DrillArgs) Files() int {
	if a.SampleFiles > 0 {
		return a.SampleFiles
	}
	return DefaultDrillFiles
}

func (a *DrillArgs) Bytes() int64 {
	if a.SampleBytes > 0 {
		return a.SampleBytes
	}
	return DefaultDrillBytes
}

// DrillOutput is a drill's output.
type DrillOutput struct {
	SnapshotID string `json:"snapshot_id"`
	// SourceSnapshots are the source dumps' snapshots drilled with it.
	SourceSnapshots []string `json:"source_snapshots,omitempty"`
	FilesChecked    int      `json:"files_checked"`
	BytesChecked    int64    `json:"bytes_checked"`
	// LiveCompared counts the sampled files still unchanged at the source
	// (same size and mtime) whose live SHA-256 was compared.
	LiveCompared int             `json:"live_compared"`
	Sample       []string        `json:"sample,omitempty"` // at most MaxDrillReported paths
	Mismatches   []DrillMismatch `json:"mismatches,omitempty"`
	// RestoreBytesPerS is the rate of the sample's restore;
	// EstimatedFullRestoreS the snapshot's size at that rate (an RTO).
	RestoreBytesPerS      float64     `json:"restore_bytes_per_s"`
	RestoreSeconds        float64     `json:"restore_s"`
	SnapshotBytes         int64       `json:"snapshot_bytes"`
	SnapshotFiles         int         `json:"snapshot_files"`
	EstimatedFullRestoreS float64     `json:"estimated_full_restore_s"`
	Probe                 *DrillProbe `json:"probe,omitempty"`
	// TargetHostID is set when the drill ran on another host than the one
	// whose backup it proves.
	TargetHostID string `json:"target_host_id,omitempty"`
}

// DrillMismatch is a sampled file that did not come back as backed up.
type DrillMismatch struct {
	Path   string `json:"path"`
	Reason string `json:"reason"`
}

// DrillProbe is the probe hook's outcome.
type DrillProbe struct {
	Name     string `json:"name"`
	OK       bool   `json:"ok"`
	ExitCode int    `json:"exit_code"`
	Output   string `json:"output,omitempty"`
}

// Validate bounds what an agent claims about a drill.
func (o *DrillOutput) Validate() error {
	switch {
	case len(o.Sample) > MaxDrillReported || len(o.Mismatches) > MaxDrillReported:
		return fmt.Errorf("%w: drill output: more than %d paths", ErrInvalid, MaxDrillReported)
	case o.FilesChecked < 0 || o.BytesChecked < 0 || o.SnapshotBytes < 0 || o.RestoreBytesPerS < 0 || o.EstimatedFullRestoreS < 0:
		return fmt.Errorf("%w: drill output: negative figures", ErrInvalid)
	case o.Probe != nil && len(o.Probe.Output) > MaxHookTail:
		return fmt.Errorf("%w: drill output: probe output longer than %d bytes", ErrInvalid, MaxHookTail)
	}
	return nil
}
