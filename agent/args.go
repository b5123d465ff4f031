package agent

import (
	"encoding/json"
	"fmt"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// decodeArgs fills the runner spec from a command's arguments, decoded and
// checked by wire.DecodeArgs as the console does. Unknown fields are
// refused: a console newer than this agent must not have an option silently
// ignored. The runner checks the values again before they reach restic.
func decodeArgs(kind string, raw json.RawMessage, spec *runner.Spec) error {
	args, err := wire.DecodeArgs(kind, raw)
	if err != nil {
		if _, ok := wire.LookupKind(kind); !ok {
			return fmt.Errorf("this agent cannot run %q jobs", kind)
		}
		return err
	}
	if args == nil {
		return nil // init, locks, health
	}
	fill, ok := specArgs[kind]
	if !ok {
		return fmt.Errorf("this agent cannot run %q jobs", kind)
	}
	fill(args, spec)
	return nil
}

// specArgs maps each kind's wire arguments (as DecodeArgs returns them)
// onto the runner's spec.
var specArgs = map[string]func(args any, spec *runner.Spec){
	wire.JobBackup: fill(func(a *wire.BackupArgs, s *runner.Spec) {
		s.Backup = runner.BackupArgs{Paths: a.Paths, Excludes: a.Excludes, Tags: a.Tags, ExcludeFiles: a.ExcludeFiles,
			OneFileSystem: a.OneFileSystem, ExcludeCaches: a.ExcludeCaches, UseFSSnapshot: a.UseFSSnapshot}
	}),
	wire.JobForget: fill(func(a *wire.ForgetArgs, s *runner.Spec) {
		r := a.Retention
		s.Forget = runner.ForgetArgs{KeepLast: r.KeepLast, KeepHourly: r.KeepHourly, KeepDaily: r.KeepDaily, KeepWeekly: r.KeepWeekly,
			KeepMonthly: r.KeepMonthly, KeepYearly: r.KeepYearly, KeepWithin: r.KeepWithin, Tags: a.Tags, Hosts: a.Hosts, Prune: a.Prune, DryRun: a.DryRun}
	}),
	wire.JobPrune: fill(func(a *wire.PruneArgs, s *runner.Spec) {
		s.Prune = runner.PruneArgs{MaxUnused: a.MaxUnused, DryRun: a.DryRun}
	}),
	wire.JobCheck:  fill(func(a *wire.CheckArgs, s *runner.Spec) { s.Check = runner.CheckArgs{ReadDataSubset: a.ReadDataSubset} }),
	wire.JobUnlock: fill(func(a *wire.UnlockArgs, s *runner.Spec) { s.Unlock = runner.UnlockArgs{RemoveAll: a.RemoveAll} }),
	wire.JobSnapshots: fill(func(a *wire.SnapshotsArgs, s *runner.Spec) {
		s.Snapshots = runner.SnapshotsArgs{Hosts: a.Hosts, Tags: a.Tags, Paths: a.Paths}
	}),
	wire.JobStats: fill(func(a *wire.StatsArgs, s *runner.Spec) {
		s.Stats = runner.StatsArgs{Mode: a.Mode, SnapshotIDs: a.SnapshotIDs}
	}),
	wire.JobDiff: fill(func(a *wire.DiffArgs, s *runner.Spec) {
		s.Diff = runner.DiffArgs{SnapshotA: a.SnapshotA, SnapshotB: a.SnapshotB}
	}),
	wire.JobRestore: fill(func(a *wire.RestoreArgs, s *runner.Spec) {
		s.Restore = runner.RestoreArgs{SnapshotID: a.SnapshotID, Include: a.Include, Target: a.TargetPath, InPlace: a.InPlace,
			Overwrite: a.Overwrite, Verify: a.Verify}
		s.LimitUploadKiB, s.LimitDownloadKiB = a.LimitUploadKiB, a.LimitDownloadKiB
	}),
	wire.JobLs: fill(func(a *wire.LsArgs, s *runner.Spec) { s.Ls = runner.LsArgs{SnapshotID: a.SnapshotID, Path: a.Path} }),
	// A drill is the agent's composition (drill.go): it decodes its
	// arguments itself, like health.
	wire.JobDrill: fill(func(*wire.DrillArgs, *runner.Spec) {}),
	// An init's chunker source is a sealed repository: buildSpec opens it.
	wire.JobInit: fill(func(*wire.InitArgs, *runner.Spec) {}),
	// A copy's destination is not in its arguments (ToRepoID is the
	// console's name for it): buildSpec opens it from the command's
	// SealedToRepo.
	wire.JobCopy: fill(func(a *wire.CopyArgs, s *runner.Spec) {
		s.Copy = runner.CopyArgs{SnapshotIDs: a.SnapshotIDs, Hostname: a.Hostname}
		s.LimitUploadKiB, s.LimitDownloadKiB = a.LimitUploadKiB, a.LimitDownloadKiB
	}),
	// A dump's writer is the agent's upload (dump.go).
	wire.JobDump: fill(func(a *wire.DumpArgs, s *runner.Spec) {
		s.Dump = runner.DumpArgs{SnapshotID: a.SnapshotID, Path: a.Path, Tar: a.Archive == wire.DumpTarGz}
	}),
	// An index job lists the whole snapshot (runIndex reads spec.Ls).
	wire.JobIndex: fill(func(a *wire.IndexArgs, s *runner.Spec) { s.Ls = runner.LsArgs{SnapshotID: a.SnapshotID} }),
}

// fill adapts a typed mapping to specArgs.
func fill[A any](f func(*A, *runner.Spec)) func(any, *runner.Spec) {
	return func(args any, spec *runner.Spec) { f(args.(*A), spec) }
}
