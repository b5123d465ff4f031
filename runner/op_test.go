package runner

import (
	"context"
	"encoding/json"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

const (
	idA = "4bba3a5b39efa6a4bd4f2b4ef87e7b01b8ba27ab7c8a1d1ce3c15c4c5e11a2a7"
	idB = "9cd7c1f0"
)

// TestOpArgv: the argv of every operation, and its version-dependent flags.
func TestOpArgv(t *testing.T) {
	v14, _ := parseResticVersion("0.14.0")
	v18, _ := parseResticVersion("0.18.1")
	for _, tc := range []struct {
		name string
		spec Spec
		v    resticVersion
		want string
	}{
		{"forget", Spec{Kind: KindForget, Forget: ForgetArgs{KeepLast: 3, KeepDaily: 7, KeepWithin: "1y6m", Tags: []string{"a,b"}, Hosts: []string{"h"}}}, v18,
			"forget --json --keep-last=3 --keep-daily=7 --keep-within=1y6m --host=h --tag=a,b"},
		{"forget prune", Spec{Kind: KindForget, Forget: ForgetArgs{KeepYearly: 1, Prune: true, DryRun: true}, Prune: PruneArgs{MaxUnused: "10%", DryRun: true}}, v18,
			"forget --json --keep-yearly=1 --dry-run --prune --max-unused=10%"},
		{"prune", Spec{Kind: KindPrune}, v18, "prune"},
		{"prune max", Spec{Kind: KindPrune, Prune: PruneArgs{MaxUnused: "unlimited"}}, v14, "prune --max-unused=unlimited"},
		{"prune size", Spec{Kind: KindPrune, Prune: PruneArgs{MaxUnused: "100M"}}, v18, "prune --max-unused=100M"},
		{"check", Spec{Kind: KindCheck}, v18, "check --json"},
		{"check group", Spec{Kind: KindCheck, Check: CheckArgs{ReadDataSubset: "2/5"}}, v18, "check --json --read-data-subset=2/5"},
		{"check pct", Spec{Kind: KindCheck, Check: CheckArgs{ReadDataSubset: "2.5%"}}, v18, "check --json --read-data-subset=2.5%"},
		{"check size", Spec{Kind: KindCheck, Check: CheckArgs{ReadDataSubset: "1G"}}, v14, "check --json --read-data-subset=1G"},
		{"unlock", Spec{Kind: KindUnlock}, v18, "unlock"},
		{"unlock all", Spec{Kind: KindUnlock, Unlock: UnlockArgs{RemoveAll: true}}, v18, "unlock --remove-all"},
		{"snapshots", Spec{Kind: KindSnapshots}, v18, "snapshots --json"},
		{"snapshots filtered", Spec{Kind: KindSnapshots, Snapshots: SnapshotsArgs{Hosts: []string{"h1"}, Tags: []string{"t"}, Paths: []string{"/srv"}}}, v18,
			"snapshots --json --host=h1 --tag=t --path=/srv"},
		{"stats", Spec{Kind: KindStats}, v18, "stats --json"},
		{"stats raw", Spec{Kind: KindStats, Stats: StatsArgs{Mode: "raw-data", SnapshotIDs: []string{idB, "latest"}}}, v18, "stats --json --mode=raw-data -- " + idB + " latest"},
		{"diff", Spec{Kind: KindDiff, Diff: DiffArgs{SnapshotA: idA, SnapshotB: idB}}, v18, "diff --json " + idA + " " + idB},
		{"restore", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/tmp/t", Include: []string{"/home/x", "/C/Users/*"}, Overwrite: "if-newer", Verify: true}}, v18,
			"restore --json --target=/tmp/t --include=/home/x --include=/C/Users/* --overwrite=if-newer --verify " + idB},
		{"restore 0.14 always", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: "latest", Target: "/tmp/t", Overwrite: "always"}}, v14, "restore --json --target=/tmp/t latest"},
		{"restore unknown version", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/t", Overwrite: "never"}}, resticVersion{}, "restore --json --target=/t --overwrite=never " + idB},
		{"ls", Spec{Kind: KindLs, Ls: LsArgs{SnapshotID: idA}}, v18, "ls --json " + idA + " /"},
		{"ls path", Spec{Kind: KindLs, Ls: LsArgs{SnapshotID: idB, Path: "/home//x/../y/"}}, v18, "ls --json " + idB + " /home/y"},
		{"locks", Spec{Kind: KindLocks}, v18, "list locks --no-lock"},
		{"backup options", Spec{Kind: KindBackup, Backup: BackupArgs{Paths: []string{"/d"}, ExcludeFiles: []string{"/etc/ex"}, OneFileSystem: true, ExcludeCaches: true}}, v18,
			"backup --json --exclude-file=/etc/ex --one-file-system --exclude-caches -- /d"},
	} {
		args, err := operations[tc.spec.Kind].argv(&tc.spec, tc.v)
		if err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if got := strings.Join(args, " "); got != tc.want {
			t.Errorf("%s:\n got %s\nwant %s", tc.name, got, tc.want)
		}
	}
	if runtime.GOOS == "windows" {
		spec := Spec{Kind: KindBackup, Backup: BackupArgs{Paths: []string{`C:\`}, UseFSSnapshot: true}}
		if args, err := (opBackup{}).argv(&spec, v18); err != nil || !strings.Contains(strings.Join(args, " "), "--use-fs-snapshot") {
			t.Errorf("VSS: %q, %v", args, err)
		}
	}
}

// TestOpArgvRefused: each refused before restic starts, with a clear error.
func TestOpArgvRefused(t *testing.T) {
	v14, _ := parseResticVersion("0.14.0")
	v16, _ := parseResticVersion("0.16.4")
	for _, tc := range []struct {
		name   string
		spec   Spec
		v      resticVersion
		errHas string
	}{
		{"forget no rule", Spec{Kind: KindForget}, resticVersion{}, "no keep rule"},
		{"forget only filters", Spec{Kind: KindForget, Forget: ForgetArgs{Hosts: []string{"h"}, Prune: true}}, resticVersion{}, "no keep rule"},
		{"forget zero within", Spec{Kind: KindForget, Forget: ForgetArgs{KeepWithin: "0d0h"}}, resticVersion{}, "keeps nothing"},
		{"forget negative", Spec{Kind: KindForget, Forget: ForgetArgs{KeepLast: -1}}, resticVersion{}, "keep-last -1 refused"},
		{"forget bad within", Spec{Kind: KindForget, Forget: ForgetArgs{KeepWithin: "30 days"}}, resticVersion{}, "units y, m, d or h"},
		{"forget within unit twice", Spec{Kind: KindForget, Forget: ForgetArgs{KeepWithin: "1d2d"}}, resticVersion{}, "given twice"},
		{"forget within overflow", Spec{Kind: KindForget, Forget: ForgetArgs{KeepWithin: "99999999999d"}}, resticVersion{}, "units y, m, d or h"},
		{"forget within dash", Spec{Kind: KindForget, Forget: ForgetArgs{KeepWithin: "-1d"}}, resticVersion{}, "units y, m, d or h"},
		{"forget dash host", Spec{Kind: KindForget, Forget: ForgetArgs{KeepLast: 1, Hosts: []string{"--prune"}}}, resticVersion{}, "would be read as an option"},
		{"forget NUL tag", Spec{Kind: KindForget, Forget: ForgetArgs{KeepLast: 1, Tags: []string{"a\x00"}}}, resticVersion{}, "tag refused: \"a\\x00\" contains control characters"},
		{"forget bad max unused", Spec{Kind: KindForget, Forget: ForgetArgs{KeepLast: 1, Prune: true}, Prune: PruneArgs{MaxUnused: "lots"}}, resticVersion{}, "max unused"},
		{"prune bad", Spec{Kind: KindPrune, Prune: PruneArgs{MaxUnused: "101%"}}, resticVersion{}, "max unused"},
		{"prune dash", Spec{Kind: KindPrune, Prune: PruneArgs{MaxUnused: "-5%"}}, resticVersion{}, "max unused"},
		{"check subset 0/2", Spec{Kind: KindCheck, Check: CheckArgs{ReadDataSubset: "0/2"}}, resticVersion{}, "read data subset"},
		{"check subset 3/2", Spec{Kind: KindCheck, Check: CheckArgs{ReadDataSubset: "3/2"}}, resticVersion{}, "read data subset"},
		{"check subset 0%", Spec{Kind: KindCheck, Check: CheckArgs{ReadDataSubset: "0%"}}, resticVersion{}, "read data subset"},
		{"check subset 0", Spec{Kind: KindCheck, Check: CheckArgs{ReadDataSubset: "0G"}}, resticVersion{}, "read data subset"},
		{"check subset junk", Spec{Kind: KindCheck, Check: CheckArgs{ReadDataSubset: "--read-data"}}, resticVersion{}, "read data subset"},
		{"snapshots dash path", Spec{Kind: KindSnapshots, Snapshots: SnapshotsArgs{Paths: []string{"-x"}}}, resticVersion{}, "would be read as an option"},
		{"stats mode", Spec{Kind: KindStats, Stats: StatsArgs{Mode: "blobs-per-file"}}, resticVersion{}, "stats mode"},
		{"stats id", Spec{Kind: KindStats, Stats: StatsArgs{SnapshotIDs: []string{"--help"}}}, resticVersion{}, "hex digits"},
		{"diff short", Spec{Kind: KindDiff, Diff: DiffArgs{SnapshotA: "abc", SnapshotB: idB}}, resticVersion{}, "8 to 64"},
		{"diff latest", Spec{Kind: KindDiff, Diff: DiffArgs{SnapshotA: idA, SnapshotB: "latest"}}, resticVersion{}, "8 to 64"},
		{"diff upper", Spec{Kind: KindDiff, Diff: DiffArgs{SnapshotA: strings.ToUpper(idB), SnapshotB: idB}}, resticVersion{}, "lower-case"},
		{"diff long", Spec{Kind: KindDiff, Diff: DiffArgs{SnapshotA: idA + "0", SnapshotB: idB}}, resticVersion{}, "8 to 64"},
		{"restore no target", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB}}, resticVersion{}, "no Target"},
		{"restore relative", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "rel/dir"}}, resticVersion{}, "absolute"},
		{"restore dash target", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "-t"}}, resticVersion{}, "would be read as an option"},
		{"restore root target", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/"}}, resticVersion{}, "InPlace"},
		{"restore both", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/t", InPlace: true}}, resticVersion{}, "either Target or InPlace"},
		{"restore include relative", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/t", Include: []string{"home"}}}, resticVersion{}, "absolute"},
		{"restore include dash", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/t", Include: []string{"--exclude=x"}}}, resticVersion{}, "would be read as an option"},
		{"restore include NUL", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/t", Include: []string{"/a\x00"}}}, resticVersion{}, "control characters"},
		{"restore bad overwrite", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/t", Overwrite: "sometimes"}}, resticVersion{}, "overwrite mode"},
		{"restore overwrite 0.14", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/t", Overwrite: "if-changed"}}, v14, "restic 0.14.0 always overwrites"},
		{"restore overwrite 0.16", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, Target: "/t", Overwrite: "never"}}, v16, "needs restic 0.17"},
		{"restore bad id", Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: "latest:/x", Target: "/t"}}, resticVersion{}, "hex digits"},
		{"ls relative", Spec{Kind: KindLs, Ls: LsArgs{SnapshotID: idB, Path: "home"}}, resticVersion{}, "absolute"},
		{"ls windows path", Spec{Kind: KindLs, Ls: LsArgs{SnapshotID: idB, Path: `C:\Users`}}, resticVersion{}, "/C/Users"},
		{"ls newline", Spec{Kind: KindLs, Ls: LsArgs{SnapshotID: idB, Path: "/a\nb"}}, resticVersion{}, "control characters"},
		{"backup newline tag", Spec{Kind: KindBackup, Backup: BackupArgs{Paths: []string{"/d"}, Tags: []string{"a\rb"}}}, resticVersion{}, "tag refused"},
		{"ls no id", Spec{Kind: KindLs}, resticVersion{}, "hex digits"},
		{"backup exclude file", Spec{Kind: KindBackup, Backup: BackupArgs{Paths: []string{"/d"}, ExcludeFiles: []string{"-x"}}}, resticVersion{}, "would be read as an option"},
	} {
		_, err := operations[tc.spec.Kind].argv(&tc.spec, tc.v)
		if err == nil || !strings.Contains(err.Error(), tc.errHas) {
			t.Errorf("%s: error %v, want it to hold %q", tc.name, err, tc.errHas)
		}
	}
	if runtime.GOOS != "windows" {
		for _, spec := range []Spec{
			{Kind: KindBackup, Backup: BackupArgs{Paths: []string{"/d"}, UseFSSnapshot: true}},
		} {
			if _, err := operations[spec.Kind].argv(&spec, resticVersion{}); err == nil || !strings.Contains(err.Error(), "only available on Windows") {
				t.Errorf("VSS on %s: %v", runtime.GOOS, err)
			}
		}
	} else {
		spec := Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: idB, InPlace: true}}
		if _, err := (opRestore{}).argv(&spec, resticVersion{}); err == nil {
			t.Error("in-place restore on Windows accepted")
		}
	}
}

// TestRefusedBeforeStart: Run refuses bad arguments without starting restic.
func TestRefusedBeforeStart(t *testing.T) {
	r := &Runner{Restic: "/nonexistent/restic"}
	repo := Repo{URL: "/r", Password: "pw"}
	for _, spec := range []Spec{
		{Kind: KindForget, Repo: repo},
		{Kind: KindDiff, Repo: repo, Diff: DiffArgs{SnapshotA: "-", SnapshotB: idB}},
		{Kind: KindRestore, Repo: repo},
		{Kind: KindLs, Repo: repo, Ls: LsArgs{SnapshotID: idA, Path: "-l"}},
	} {
		res := r.Run(context.Background(), spec, Hooks{OnStart: func(time.Time) { t.Errorf("%s: started", spec.Kind) }})
		if res.Status != StatusFailed || res.ExitCode != -1 || res.Error == "" || strings.Contains(res.Error, "cannot start") {
			t.Errorf("%s: %+v", spec.Kind, res)
		}
	}
	r.ResticVersion = "latest"
	res := r.Run(context.Background(), Spec{Kind: KindSnapshots, Repo: repo}, Hooks{})
	if res.Status != StatusFailed || !strings.Contains(res.Error, `invalid restic version "latest"`) {
		t.Errorf("bad ResticVersion: %+v", res)
	}
	r.ResticVersion = ""
	if err := r.LsStream(context.Background(), repo, "-x", func(Node) error { return nil }); err == nil || !strings.Contains(err.Error(), "hex digits") {
		t.Errorf("LsStream: %v", err)
	}
}

func TestLockArgs(t *testing.T) {
	r := &Runner{}
	v15, _ := parseResticVersion("0.15.2")
	v16, _ := parseResticVersion("0.16.0")
	for _, tc := range []struct {
		op        operation
		v         resticVersion
		retryLock time.Duration
		want      string
	}{
		{opCheck{}, resticVersion{}, 0, "--retry-lock 5m0s"},
		{opPrune{}, v16, 0, "--retry-lock 5m0s"},
		{opForget{}, v16, 90 * time.Second, "--retry-lock 1m30s"},
		{opForget{}, v16, -1, ""},
		{opCheck{}, v15, 0, ""},
		{opInit{}, resticVersion{}, 0, ""},
		{opUnlock{}, resticVersion{}, 0, ""},
		{opBackup{}, resticVersion{}, 0, ""},
		{opSnapshots{}, resticVersion{}, 0, ""},
	} {
		r.RetryLock = tc.retryLock
		if got := strings.Join(r.lockArgs(tc.op, tc.v), " "); got != tc.want {
			t.Errorf("%T %v %v: %q, want %q", tc.op, tc.v, tc.retryLock, got, tc.want)
		}
	}
}

func TestVersionCompare(t *testing.T) {
	for _, tc := range []struct {
		v, min string
		want   bool
	}{
		{"0.18.1", "0.16.0", true},
		{"0.16.0", "0.16.0", true},
		{"0.15.9", "0.16.0", false},
		{"0.14.0", "0.17.0", false},
		{"0.16.0-dev", "0.16.0", true},
		{"v0.17.3", "0.17.1", true},
		{"1.0.0", "0.99.99", true},
		{"0.9.6", "0.10.0", false},
		{"", "0.17.0", true},      // unknown: the newest
		{"junk", "0.17.0", true},  // Run refuses it; the helper assumes the newest
		{"0.18.1", "junk", false}, // invalid minimum
	} {
		if got := VersionAtLeast(tc.v, tc.min); got != tc.want {
			t.Errorf("VersionAtLeast(%q, %q) = %v", tc.v, tc.min, got)
		}
	}
	for _, bad := range []string{"0.18", "x0.18.1", "0.18.1 extra", "0.99999999.0"} {
		if _, err := parseResticVersion(bad); err == nil {
			t.Errorf("parseResticVersion(%q) accepted", bad)
		}
	}
}

func TestParseResticBytes(t *testing.T) {
	for in, want := range map[string]uint64{
		"0 B": 0, "92 B": 92, "1.961 KiB": 2008, "1.000 MiB": 1 << 20, "2.500 GiB": 5 << 29, "1.000 TiB": 1 << 40,
	} {
		if got, err := parseResticBytes(in); err != nil || got != want {
			t.Errorf("%q: %d, %v; want %d", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "12", "1.0 XB", "-1 B", "NaN B", "1e30 TiB"} {
		if _, err := parseResticBytes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestParsersDefensive: text, broken JSON and unexpected shapes never make
// an operation succeed with invented output, nor panic.
func TestParsersDefensive(t *testing.T) {
	lines := []string{
		"reading repository password from stdin", "{", `{"message_type":"change","path":7}`, `[1,2,`, `{"struct_type":"node","name":3}`,
		`[{"host":5}]`, `{"message_type":"statistics","changed_files":"x"}`, "successfully removed many locks",
		"total prune:  x blobs / 3 B", `{"message_type":"summary","num_errors":"x"}`,
	}
	for kind, op := range operations {
		out := newOutput(newRedactor(Repo{}))
		spec := Spec{Kind: kind}
		if p, ok := op.(parsingOp); ok {
			out.parser = p.newParser(&spec)
		}
		for _, l := range lines {
			out.stdoutLine([]byte(l), false)
			out.stderrLine([]byte(l), false)
		}
		res := outcome(context.Background(), &spec, op, out, 0, false, Result{})
		t.Logf("%s: %s %q %s", kind, res.Status, res.Error, res.Output)
		switch kind {
		case KindSnapshots, KindStats, KindDiff, KindLs, KindForget, KindCheck:
			if res.Status == StatusSucceeded {
				t.Errorf("%s succeeded on garbage: %+v", kind, res)
			}
		}
	}
	// forget's group with a non-string host is a decode error, not a success.
	out := newOutput(newRedactor(Repo{}))
	out.parser = opForget{}.newParser(&Spec{})
	out.stdoutLine([]byte(`[{"host":5}]`), false)
	if res := outcome(context.Background(), &Spec{}, opForget{}, out, 0, false, Result{}); res.Status != StatusFailed {
		t.Errorf("forget: %+v", res)
	}
}

// TestDiffTruncated: the change list is capped, the statistics complete.
func TestDiffTruncated(t *testing.T) {
	out := newOutput(newRedactor(Repo{}))
	out.parser = opDiff{}.newParser(&Spec{})
	for i := 0; i < maxDiffChanges+5; i++ {
		out.stdoutLine([]byte(`{"message_type":"change","path":"/f","modifier":"+"}`), false)
	}
	out.stdoutLine([]byte(`{"message_type":"statistics","source_snapshot":"a","target_snapshot":"b","changed_files":0,"added":{"files":10005},"removed":{}}`), false)
	res := outcome(context.Background(), &Spec{}, opDiff{}, out, 0, false, Result{})
	var d DiffOutput
	decodeOutput(t, res, &d)
	if !d.Truncated || len(d.Changes) != maxDiffChanges || d.TotalChanges != maxDiffChanges+5 || d.Statistics.Added.Files != 10005 {
		t.Errorf("truncated %v, %d changes, total %d, %+v", d.Truncated, len(d.Changes), d.TotalChanges, d.Statistics)
	}
}

// TestBigDocument: a snapshot list longer than the normal line limit.
func TestBigDocument(t *testing.T) {
	var b strings.Builder
	b.WriteString("[")
	n := 0
	for b.Len() < 3*maxLine {
		if n > 0 {
			b.WriteString(",")
		}
		b.WriteString(`{"time":"2024-01-01T00:00:00Z","hostname":"h","paths":["/x"],"id":"` + idA + `","short_id":"x"}`)
		n++
	}
	b.WriteString("]\n")
	out := newOutput(newRedactor(Repo{}))
	w := newLineWriter(out.stdoutLine)
	w.max = opSnapshots{}.maxStdoutLine()
	w.Write([]byte(b.String()))
	w.flush()
	res := outcome(context.Background(), &Spec{}, opSnapshots{}, out, 0, false, Result{})
	var snaps []Snapshot
	decodeOutput(t, res, &snaps)
	if len(snaps) != n || snaps[0].ShortID != idA[:8] {
		t.Fatalf("%d snapshots of %d", len(snaps), n)
	}
	// Over the cap: a clear failure.
	out = newOutput(newRedactor(Repo{}))
	w = newLineWriter(out.stdoutLine)
	w.max = 1 << 10
	w.Write([]byte(b.String()))
	w.flush()
	res = outcome(context.Background(), &Spec{}, opSnapshots{}, out, 0, false, Result{})
	if res.Status != StatusFailed || !strings.Contains(res.Error, "larger than") {
		t.Errorf("%+v", res)
	}
}

// FuzzParsers feeds arbitrary lines to every operation's parser, on both
// streams, and completes it with the usual exit codes: no panic, and a
// status always.
func FuzzParsers(f *testing.F) {
	for _, v := range fixtureVersions {
		for _, name := range []string{"forget-prune", "check-errors", "ls", "diff", "restore", "unlock", "prune", "snapshots"} {
			for _, ext := range []string{".stdout", ".stderr"} {
				for _, l := range strings.Split(string(readFixture(f, v+"/"+name+ext)), "\n") {
					f.Add(l)
				}
			}
		}
	}
	f.Fuzz(func(t *testing.T, line string) {
		for kind, op := range operations {
			for _, code := range []int{0, 1, 3, 11} {
				spec := Spec{Kind: kind, Ls: LsArgs{Path: "/tmp"}}
				out := newOutput(newRedactor(Repo{}))
				if p, ok := op.(parsingOp); ok {
					out.parser = p.newParser(&spec)
				}
				out.stdoutLine([]byte(line), false)
				out.stderrLine([]byte(line), false)
				out.stdoutLine([]byte(line), true)
				res := outcome(context.Background(), &spec, op, out, code, false, Result{})
				if res.Status == "" || res.Output != nil && !json.Valid(res.Output) {
					t.Fatalf("%s, code %d: %+v", kind, code, res)
				}
			}
		}
	})
}

// TestForgetPruneFails: forget removed snapshots, then its prune failed:
// the groups are in Output all the same.
func TestForgetPruneFails(t *testing.T) {
	out := newOutput(newRedactor(Repo{}))
	out.parser = opForget{}.newParser(&Spec{})
	out.stdoutLine([]byte(`[{"tags":null,"host":"h","paths":["/d"],"keep":[{"id":"`+idA+`","time":"t","tree":"x"}],"remove":null,"reasons":[{"snapshot":{"time":"t","tree":"x"},"matches":["last snapshot"]}]}]`), false)
	out.stdoutLine([]byte("loading indexes..."), false)
	out.stderrLine([]byte("Fatal: failed to delete pack: 403 Forbidden"), false)
	res := outcome(context.Background(), &Spec{}, opForget{}, out, 1, false, Result{})
	want := `{"groups":[{"host":"h","paths":["/d"],"tags":[],"keep":["` + idA + `"],"remove":[],"reasons":[{"id":"` + idA + `","matches":["last snapshot"]}],"times":{"` + idA + `":"t"}}]}`
	if res.Status != StatusFailed || string(res.Output) != want || !strings.Contains(res.Error, "403 Forbidden") {
		t.Errorf("%+v\n%s", res, res.Output)
	}
}

// TestOperationsAreWireKinds: every restic subcommand the runner runs is a
// job kind of wire's table (the runner's Kind* are wire's names).
func TestOperationsAreWireKinds(t *testing.T) {
	for kind := range operations {
		if _, ok := wire.LookupKind(kind); !ok {
			t.Errorf("operation %q is not a wire job kind", kind)
		}
	}
}
