package agent

import (
	"bytes"
	"encoding/json"
	"fmt"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// decodeArgs fills the runner spec from a command's arguments. Unknown
// fields are refused: a console newer than this agent must not have an
// option silently ignored. The runner validates the values themselves.
func decodeArgs(kind string, raw json.RawMessage, spec *runner.Spec) error {
	strict := func(v any) error {
		if len(raw) == 0 || string(raw) == "null" {
			return nil
		}
		dec := json.NewDecoder(bytes.NewReader(raw))
		dec.DisallowUnknownFields()
		if err := dec.Decode(v); err != nil {
			return fmt.Errorf("%s arguments: %w", kind, err)
		}
		return nil
	}
	switch kind {
	case wire.JobInit, wire.JobLocks, wire.JobHealth:
		return nil
	case wire.JobIndex:
		return indexSpec(raw, spec)
	case wire.JobBackup:
		var a wire.BackupArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Backup = runner.BackupArgs{Paths: a.Paths, Excludes: a.Excludes, Tags: a.Tags, ExcludeFiles: a.ExcludeFiles,
			OneFileSystem: a.OneFileSystem, ExcludeCaches: a.ExcludeCaches, UseFSSnapshot: a.UseFSSnapshot}
	case wire.JobForget:
		var a wire.ForgetArgs
		if err := strict(&a); err != nil {
			return err
		}
		r := a.Retention
		spec.Forget = runner.ForgetArgs{KeepLast: r.KeepLast, KeepHourly: r.KeepHourly, KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly,
			KeepMonthly: r.KeepMonthly, KeepYearly: r.KeepYearly, KeepWithin: r.KeepWithin, Tags: a.Tags, Hosts: a.Hosts, Prune: a.Prune, DryRun: a.DryRun}
	case wire.JobPrune:
		var a wire.PruneArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Prune = runner.PruneArgs{MaxUnused: a.MaxUnused, DryRun: a.DryRun}
	case wire.JobCheck:
		var a wire.CheckArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Check = runner.CheckArgs{ReadDataSubset: a.ReadDataSubset}
	case wire.JobUnlock:
		var a wire.UnlockArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Unlock = runner.UnlockArgs{RemoveAll: a.RemoveAll}
	case wire.JobSnapshots:
		var a wire.SnapshotsArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Snapshots = runner.SnapshotsArgs{Hosts: a.Hosts, Tags: a.Tags, Paths: a.Paths}
	case wire.JobStats:
		var a wire.StatsArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Stats = runner.StatsArgs{Mode: a.Mode, SnapshotIDs: a.SnapshotIDs}
	case wire.JobDiff:
		var a wire.DiffArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Diff = runner.DiffArgs{SnapshotA: a.SnapshotA, SnapshotB: a.SnapshotB}
	case wire.JobRestore:
		var a wire.RestoreArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Restore = runner.RestoreArgs{SnapshotID: a.SnapshotID, Include: a.Include, Target: a.TargetPath, InPlace: a.InPlace,
			Overwrite: a.Overwrite, Verify: a.Verify}
	case wire.JobLs:
		var a wire.LsArgs
		if err := strict(&a); err != nil {
			return err
		}
		spec.Ls = runner.LsArgs{SnapshotID: a.SnapshotID, Path: a.Path}
	default:
		return fmt.Errorf("this agent cannot run %q jobs", kind)
	}
	return nil
}
