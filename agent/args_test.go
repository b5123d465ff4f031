package agent

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// TestSpecArgsCoverWire: every job kind whose arguments wire decodes has a
// mapping onto the runner's spec, and nothing else does.
func TestSpecArgsCoverWire(t *testing.T) {
	withArgs := map[string]bool{}
	for _, k := range wire.Kinds() {
		// DecodeArgs of empty arguments returns the kind's type, or an
		// error from its checks: either way the kind takes arguments.
		if a, err := wire.DecodeArgs(k.Name, nil); a != nil || err != nil {
			withArgs[k.Name] = true
		}
	}
	for kind := range withArgs {
		if specArgs[kind] == nil {
			t.Errorf("%s: no mapping onto the runner's spec", kind)
		}
	}
	for kind := range specArgs {
		if !withArgs[kind] {
			t.Errorf("%s: mapped, but wire decodes no arguments for it", kind)
		}
	}
}

func TestDecodeArgs(t *testing.T) {
	const id = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	for _, tc := range []struct {
		kind, args string
		check      func(s runner.Spec) bool
	}{
		{wire.JobBackup, `{"paths":["/d"],"excludes":["*.tmp"],"tags":["t"],"exclude_files":["/x"],"one_file_system":true,"exclude_caches":true,"use_fs_snapshot":true}`,
			func(s runner.Spec) bool {
				b := s.Backup
				return len(b.Paths) == 1 && b.Excludes[0] == "*.tmp" && b.Tags[0] == "t" && b.ExcludeFiles[0] == "/x" && b.OneFileSystem && b.ExcludeCaches && b.UseFSSnapshot
			}},
		{wire.JobForget, `{"retention":{"keep_last":1,"keep_hourly":2,"keep_daily":3,"keep_weekly":4,"keep_monthly":5,"keep_yearly":6,"keep_within":"1y"},"tags":["t"],"hosts":["h"],"prune":true,"dry_run":true}`,
			func(s runner.Spec) bool {
				f := s.Forget
				return f.KeepLast == 1 && f.KeepHourly == 2 && f.KeepDaily == 3 && f.KeepWeekly == 4 && f.KeepMonthly == 5 && f.KeepYearly == 6 &&
					f.KeepWithin == "1y" && f.Tags[0] == "t" && f.Hosts[0] == "h" && f.Prune && f.DryRun
			}},
		{wire.JobPrune, `{"max_unused":"5%","dry_run":true}`, func(s runner.Spec) bool { return s.Prune.MaxUnused == "5%" && s.Prune.DryRun }},
		{wire.JobCheck, `{"read_data_subset":"1/3"}`, func(s runner.Spec) bool { return s.Check.ReadDataSubset == "1/3" }},
		{wire.JobUnlock, `{"remove_all":true}`, func(s runner.Spec) bool { return s.Unlock.RemoveAll }},
		{wire.JobSnapshots, `{"hosts":["h"],"tags":["t"],"paths":["/p"]}`, func(s runner.Spec) bool {
			return s.Snapshots.Hosts[0] == "h" && s.Snapshots.Tags[0] == "t" && s.Snapshots.Paths[0] == "/p"
		}},
		{wire.JobStats, `{"mode":"raw-data","snapshot_ids":["latest"]}`, func(s runner.Spec) bool { return s.Stats.Mode == "raw-data" && s.Stats.SnapshotIDs[0] == "latest" }},
		{wire.JobDiff, `{"snapshot_a":"0123abcd","snapshot_b":"4567cdef"}`, func(s runner.Spec) bool { return s.Diff.SnapshotA == "0123abcd" && s.Diff.SnapshotB == "4567cdef" }},
		{wire.JobRestore, `{"snapshot_id":"latest","include":["/a"],"target_path":"/t","overwrite":"never","verify":true,"limit_upload_kib":7,"limit_download_kib":8}`, func(s runner.Spec) bool {
			r := s.Restore
			return r.SnapshotID == "latest" && r.Include[0] == "/a" && r.Target == "/t" && !r.InPlace && r.Overwrite == "never" && r.Verify &&
				s.LimitUploadKiB == 7 && s.LimitDownloadKiB == 8
		}},
		{wire.JobLs, `{"snapshot_id":"0123abcd","path":"/a"}`, func(s runner.Spec) bool { return s.Ls.SnapshotID == "0123abcd" && s.Ls.Path == "/a" }},
		{wire.JobIndex, `{"snapshot_id":"` + id + `"}`, func(s runner.Spec) bool { return s.Ls.SnapshotID == id && s.Ls.Path == "" }},
		{wire.JobCopy, `{"to_repo_id":"r2","snapshot_ids":["0123abcd"],"hostname":"h","limit_upload_kib":5,"limit_download_kib":6}`, func(s runner.Spec) bool {
			c := s.Copy
			return len(c.SnapshotIDs) == 1 && c.SnapshotIDs[0] == "0123abcd" && c.Hostname == "h" && c.To.URL == "" && s.LimitUploadKiB == 5 && s.LimitDownloadKiB == 6
		}},
		{wire.JobInit, ``, func(s runner.Spec) bool { return true }},
		{wire.JobHealth, `null`, func(s runner.Spec) bool { return true }},
		{wire.JobLocks, `{}`, func(s runner.Spec) bool { return true }},
	} {
		var spec runner.Spec
		if err := decodeArgs(tc.kind, json.RawMessage(tc.args), &spec); err != nil || !tc.check(spec) {
			t.Errorf("%s %s: %v, spec %+v", tc.kind, tc.args, err, spec)
		}
	}
	for _, tc := range []struct{ kind, args, want string }{
		{wire.JobBackup, `{"paths":["/d"],"bogus":1}`, `backup args: json: unknown field "bogus"`},
		{wire.JobInit, `{"bogus":1}`, `init args: json: unknown field "bogus"`},
		{wire.JobBackup, `{}`, "backup args: at least one path or source is required"},
		{wire.JobIndex, `{"snapshot_id":"0123abcd"}`, "index needs the full 64-hex snapshot_id"},
		{wire.JobCancel, ``, `this agent cannot run "cancel" jobs`},
		{"mirror", `{}`, `this agent cannot run "mirror" jobs`},
	} {
		var spec runner.Spec
		err := decodeArgs(tc.kind, json.RawMessage(tc.args), &spec)
		if err == nil || err.Error() != tc.want {
			t.Errorf("%s %s: %v, want %q", tc.kind, tc.args, err, tc.want)
		}
		if err != nil && strings.HasPrefix(tc.want, "this agent") == errors.Is(err, wire.ErrBadArgs) {
			t.Errorf("%s: ErrBadArgs %v", tc.kind, errors.Is(err, wire.ErrBadArgs))
		}
	}
}
