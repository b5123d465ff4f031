package wire

import (
	"encoding/json"
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestKindTable pins every kind's properties to what the console's sets
// said before the table (console/dispatch.go supportedKinds, exclusiveKinds,
// destructive; console/alerts.go ignoredKinds; schedules.Kinds).
func TestKindTable(t *testing.T) {
	want := []KindInfo{
		{Name: "init", Operator: true},
		{Name: "backup", Schedulable: true, Operator: true},
		{Name: "forget", Exclusive: true, Destructive: true, Schedulable: true, Maintenance: true, Operator: true},
		{Name: "prune", Exclusive: true, Destructive: true, Schedulable: true, Maintenance: true, Operator: true},
		{Name: "check", Exclusive: true, Schedulable: true, Operator: true},
		{Name: "unlock", Operator: true},
		{Name: "snapshots", Operator: true},
		{Name: "stats", Operator: true},
		{Name: "diff", Operator: true},
		{Name: "restore", Operator: true},
		{Name: "ls", Probe: true, Operator: true},
		{Name: "locks", Probe: true, Operator: true},
		{Name: "health", Probe: true, Operator: true},
		{Name: "index", Probe: true, Operator: true},
		{Name: "drill", Schedulable: true, Operator: true},
		{Name: "copy", Schedulable: true, Operator: true},
		{Name: "rotate_key", Exclusive: true, Destructive: true, Maintenance: true},
		{Name: "dump", Probe: true},
	}
	if got := Kinds(); !reflect.DeepEqual(got, want) {
		t.Fatalf("Kinds() =\n%+v\nwant\n%+v", got, want)
	}
	for _, k := range want {
		got, ok := LookupKind(k.Name)
		if !ok || got != k {
			t.Errorf("LookupKind(%q) = %+v, %v", k.Name, got, ok)
		}
	}
	for _, name := range []string{JobCancel, "", "Backup", "rm -rf"} {
		if _, ok := LookupKind(name); ok {
			t.Errorf("LookupKind(%q) found a job kind", name)
		}
	}
	// Kinds returns a copy: the table cannot be changed through it.
	Kinds()[0].Operator = false
	if k, _ := LookupKind(JobInit); !k.Operator {
		t.Error("Kinds() exposes the table")
	}
}

func TestKindNames(t *testing.T) {
	for name, tc := range map[string]struct {
		pred func(KindInfo) bool
		want string
	}{
		"all":         {nil, "init backup forget prune check unlock snapshots stats diff restore ls locks health index drill copy rotate_key dump"},
		"schedulable": {func(k KindInfo) bool { return k.Schedulable }, "backup forget prune check drill copy"},
		"exclusive":   {func(k KindInfo) bool { return k.Exclusive }, "forget prune check rotate_key"},
		"destructive": {func(k KindInfo) bool { return k.Destructive }, "forget prune rotate_key"},
		"maintenance": {func(k KindInfo) bool { return k.Maintenance }, "forget prune rotate_key"},
		"probe":       {func(k KindInfo) bool { return k.Probe }, "ls locks health index dump"},
		"operator":    {func(k KindInfo) bool { return k.Operator }, "init backup forget prune check unlock snapshots stats diff restore ls locks health index drill copy"},
		"alerting":    {func(k KindInfo) bool { return k.Operator && !k.Probe }, "init backup forget prune check unlock snapshots stats diff restore drill copy"},
	} {
		if got := strings.Join(KindNames(tc.pred), " "); got != tc.want {
			t.Errorf("%s: %q, want %q", name, got, tc.want)
		}
	}
}

func TestDestructive(t *testing.T) {
	for _, tc := range []struct {
		kind, args string
		want       bool
	}{
		{"forget", `{"retention":{"keep_last":1}}`, true},
		{"forget", ``, true},
		{"prune", `null`, true},
		{"unlock", `{"remove_all":true}`, true},
		{"unlock", `{"remove_all":false}`, false},
		{"unlock", `{}`, false},
		{"unlock", ``, false},
		{"unlock", `{"remove_all":"yes"}`, false},
		{"check", `{}`, false},
		{"backup", `{"paths":["/"]}`, false},
		{"init", ``, false},
		{"health", ``, false},
		{"cancel", ``, false},
		{"nope", `{"remove_all":true}`, false},
	} {
		if got := Destructive(tc.kind, json.RawMessage(tc.args)); got != tc.want {
			t.Errorf("Destructive(%s, %s) = %v", tc.kind, tc.args, got)
		}
	}
}

func TestTerminalStatus(t *testing.T) {
	for s, want := range map[string]bool{
		StatusQueued: false, StatusRunning: false, "": false, "done": false,
		StatusSucceeded: true, StatusPartial: true, StatusFailed: true, StatusCancelled: true, StatusExpired: true,
	} {
		if TerminalStatus(s) != want {
			t.Errorf("TerminalStatus(%q) = %v", s, !want)
		}
	}
}

const (
	hex64 = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	hex8  = "0123abcd"
)

// TestDecodeArgs: for every kind, valid arguments with their normal form,
// invalid ones with the operator's exact message, and an unknown field.
func TestDecodeArgs(t *testing.T) {
	type bad struct{ args, msg string }
	for _, tc := range []struct {
		kind     string
		good     string
		norm     string // NormalizeArgs(good); "" for kinds without args
		bad      []bad
		wantType any
	}{
		{kind: "init", good: `{}`, wantType: &InitArgs{}, norm: `{}`, bad: []bad{{`{"copy_chunker_params_from":"a b"}`, "copy_chunker_params_from must be a repository id"}}},
		{kind: "locks", good: `null`},
		{kind: "health", good: ``},
		{
			kind: "backup", good: `{"paths":["/home","/etc"],"excludes":["*.tmp"],"tags":["daily"],"one_file_system":true}`,
			norm:     `{"paths":["/home","/etc"],"excludes":["*.tmp"],"tags":["daily"],"one_file_system":true}`,
			wantType: &BackupArgs{},
			bad: []bad{
				{`{}`, "backup args: at least one path or source is required"},
				{``, "backup args: at least one path or source is required"},
				{`{"paths":["/","--password-command=sh"]}`, `"--password-command=sh" starts with '-' and would be read as an option`},
				{`{"paths":["/"],"tags":[""]}`, "empty value"},
				{`{"paths":["/"],"exclude_files":["a\nb"]}`, `"a\nb" contains control characters`},
				{`{"paths":"/"}`, "backup args: json: cannot unmarshal string into Go struct field BackupArgs.paths of type []string"},
				{`{"paths":["/"],"tags":["daily,weekly"]}`, `tag "daily,weekly" contains a comma, which restic reads as a separator between tags: give each tag as its own entry`},
			},
		},
		{
			kind: "forget", good: `{"retention":{"keep_daily":7,"keep_within":"1y6m"},"prune":true,"tags":["t"]}`,
			norm:     `{"retention":{"keep_daily":7,"keep_within":"1y6m"},"tags":["t"],"prune":true}`,
			wantType: &ForgetArgs{},
			bad: []bad{
				{`{}`, "a forget needs a retention with at least one keep rule"},
				{`{"retention":{"keep_last":-1,"keep_daily":3}}`, "keep counts must not be negative"},
				{`{"retention":{"keep_within":"a week"}}`, `keep_within "a week" is not a duration such as 30d or 1y6m`},
				{`{"retention":{"keep_last":1},"hosts":["-h"]}`, `"-h" starts with '-' and would be read as an option`},
				{`{"retention":{"keep_last":1},"tags":["a,"]}`, `tag filter "a," has an empty tag between commas ("a,b" means snapshots with both a and b)`},
			},
		},
		{
			kind: "prune", good: `{"max_unused":"5%"}`, norm: `{"max_unused":"5%"}`, wantType: &PruneArgs{},
			bad: []bad{{`{"max_unused":"-5%"}`, `max_unused "-5%" is not a size, a percentage or "unlimited"`}},
		},
		{
			kind: "check", good: `{"read_data_subset":"1/10"}`, norm: `{"read_data_subset":"1/10"}`, wantType: &CheckArgs{},
			bad: []bad{{`{"read_data_subset":"lots"}`, `read_data_subset "lots" is not n/t, a percentage or a size`}},
		},
		{
			kind: "unlock", good: `{"remove_all":true}`, norm: `{"remove_all":true}`, wantType: &UnlockArgs{},
			bad: []bad{{`{"remove_all":"yes"}`, "unlock args: json: cannot unmarshal string into Go struct field UnlockArgs.remove_all of type bool"}},
		},
		{
			kind: "snapshots", good: `{"hosts":["h1"],"tags":["a,b"],"paths":["/home"]}`, norm: `{"hosts":["h1"],"tags":["a,b"],"paths":["/home"]}`, wantType: &SnapshotsArgs{},
			bad: []bad{
				{`{"paths":["--no-lock"]}`, `"--no-lock" starts with '-' and would be read as an option`},
				{`{"tags":["a,,b"]}`, `tag filter "a,,b" has an empty tag between commas ("a,b" means snapshots with both a and b)`},
			},
		},
		{
			kind: "stats", good: `{"mode":"raw-data","snapshot_ids":["latest","` + hex8 + `"]}`, norm: `{"mode":"raw-data","snapshot_ids":["latest","` + hex8 + `"]}`, wantType: &StatsArgs{},
			bad: []bad{
				{`{"mode":"blobs-per-file"}`, "stats mode must be restore-size or raw-data"},
				{`{"snapshot_ids":["ABCDEF01"]}`, `snapshot id "ABCDEF01" is not 8-64 hex characters or "latest"`},
			},
		},
		{
			kind: "diff", good: `{"snapshot_a":"` + hex8 + `","snapshot_b":"` + hex64 + `"}`, norm: `{"snapshot_a":"` + hex8 + `","snapshot_b":"` + hex64 + `"}`, wantType: &DiffArgs{},
			bad: []bad{
				{`{"snapshot_a":"latest","snapshot_b":"` + hex8 + `"}`, "diff needs snapshot_a and snapshot_b as 8-64 hex characters"},
				{`{"snapshot_a":"` + hex8 + `"}`, "diff needs snapshot_a and snapshot_b as 8-64 hex characters"},
			},
		},
		{
			kind: "restore", good: `{"snapshot_id":"latest","include":["/home/a"],"target_path":"C:\\restore","overwrite":"if-newer","verify":true}`,
			norm:     `{"snapshot_id":"latest","include":["/home/a"],"target_path":"C:\\restore","overwrite":"if-newer","verify":true}`,
			wantType: &RestoreArgs{},
			bad: []bad{
				{`{"target_path":"/t"}`, `restore needs a snapshot_id (8-64 hex characters or "latest")`},
				{`{"snapshot_id":"latest"}`, "restore needs exactly one of target_path and in_place"},
				{`{"snapshot_id":"latest","target_path":"/t","in_place":true}`, "restore needs exactly one of target_path and in_place"},
				{`{"snapshot_id":"latest","target_path":"rel/dir"}`, `target_path "rel/dir" must be absolute`},
				{`{"snapshot_id":"latest","target_path":"\\\\srv\\share\\..\\x"}`, `target_path "\\\\srv\\share\\..\\x" must not contain '..'`},
				{`{"snapshot_id":"latest","target_path":"-t"}`, `"-t" starts with '-' and would be read as an option`},
				{`{"snapshot_id":"latest","in_place":true,"include":["home"]}`, `"home" must be an absolute path inside the snapshot`},
				{`{"snapshot_id":"latest","in_place":true,"include":["/a/../b"]}`, `"/a/../b" must not contain '..'`},
				{`{"snapshot_id":"latest","in_place":true,"overwrite":"sometimes"}`, "overwrite must be always, if-changed, if-newer or never"},
			},
		},
		{
			kind: "ls", good: `{"snapshot_id":"` + hex8 + `","path":"/C/Users"}`, norm: `{"snapshot_id":"` + hex8 + `","path":"/C/Users"}`, wantType: &LsArgs{},
			bad: []bad{
				{`{}`, "ls needs a snapshot_id"},
				{`{"snapshot_id":"latest","path":"C:\\Users"}`, `"C:\\Users" must be an absolute path inside the snapshot`},
			},
		},
		{
			kind: "index", good: `{"snapshot_id":"` + hex64 + `"}`, norm: `{"snapshot_id":"` + hex64 + `"}`, wantType: &IndexArgs{},
			bad: []bad{
				{`{"snapshot_id":"` + hex8 + `"}`, "index needs the full 64-hex snapshot_id"},
				{`{"snapshot_id":"latest"}`, "index needs the full 64-hex snapshot_id"},
			},
		},
		{
			kind: "dump", good: `{"snapshot_id":"` + hex64 + `","path":"/","archive":"tar.gz","size":7}`, norm: `{"snapshot_id":"` + hex64 + `","path":"/","archive":"tar.gz","size":7}`, wantType: &DumpArgs{},
			bad: []bad{
				{`{"snapshot_id":"` + hex8 + `","path":"/a"}`, "dump needs the full 64-hex snapshot_id"},
				{`{"snapshot_id":"` + hex64 + `"}`, "dump needs a path"},
				{`{"snapshot_id":"` + hex64 + `","path":"/"}`, `dump of "/" (the whole snapshot) needs archive "tar.gz"`},
				{`{"snapshot_id":"` + hex64 + `","path":"/a","archive":"zip"}`, `dump archive "zip" is not "tar.gz" or empty (a file as is)`},
				{`{"snapshot_id":"` + hex64 + `","path":"/a/../../etc"}`, `"/a/../../etc" must not contain '..'`},
			},
		},
	} {
		a, err := DecodeArgs(tc.kind, json.RawMessage(tc.good))
		if err != nil {
			t.Errorf("%s %s: %v", tc.kind, tc.good, err)
			continue
		}
		if tc.wantType == nil {
			if a != nil {
				t.Errorf("%s: args %#v, want nil", tc.kind, a)
			}
		} else if reflect.TypeOf(a) != reflect.TypeOf(tc.wantType) {
			t.Errorf("%s: args of type %T, want %T", tc.kind, a, tc.wantType)
		}
		norm, err := NormalizeArgs(tc.kind, json.RawMessage(tc.good))
		if err != nil || string(norm) != tc.norm {
			t.Errorf("%s: NormalizeArgs = %s, %v; want %s", tc.kind, norm, err, tc.norm)
		}
		for _, b := range append(tc.bad, bad{`{"bogus":1}`, tc.kind + ` args: json: unknown field "bogus"`}) {
			_, err := DecodeArgs(tc.kind, json.RawMessage(b.args))
			if err == nil || err.Error() != b.msg || !errors.Is(err, ErrBadArgs) {
				t.Errorf("%s %s: error %v, want %q (ErrBadArgs)", tc.kind, b.args, err, b.msg)
			}
			if n, err := NormalizeArgs(tc.kind, json.RawMessage(b.args)); err == nil || n != nil {
				t.Errorf("%s %s: NormalizeArgs = %s, %v", tc.kind, b.args, n, err)
			}
		}
	}
	for _, kind := range []string{"cancel", "", "restic"} {
		_, err := DecodeArgs(kind, nil)
		want := `job kind "` + kind + `" is not one of init, backup, forget, prune, check, unlock, snapshots, stats, diff, restore, ls, locks, health, index, drill, copy, rotate_key, dump`
		if err == nil || err.Error() != want || !errors.Is(err, ErrBadArgs) {
			t.Errorf("kind %q: %v", kind, err)
		}
	}
	if _, err := DecodeArgs(JobPrune, json.RawMessage(`{} {}`)); err == nil || err.Error() != "prune args: trailing data after the object" {
		t.Errorf("trailing data: %v", err)
	}
	if _, err := DecodeArgs(JobBackup, json.RawMessage(`[`)); !errors.Is(err, ErrBadArgs) || !strings.HasPrefix(err.Error(), "backup args: ") {
		t.Errorf("malformed: %v", err)
	}
}

// TestValueChecks: CheckArg and CheckTreePath; "" wants no error.
func TestValueChecks(t *testing.T) {
	for name, tc := range map[string]struct {
		check func(string) error
		cases map[string]string
	}{
		"CheckArg": {CheckArg, map[string]string{
			"/home": "", "a b": "", "a-b": "", "ä": "",
			"":      "empty value",
			"-x":    `"-x" starts with '-' and would be read as an option`,
			"--":    `"--" starts with '-' and would be read as an option`,
			"a\x00": `"a\x00" contains control characters`,
			"a\rb":  `"a\rb" contains control characters`,
			"a\n":   `"a\n" contains control characters`,
		}},
		"CheckTreePath": {CheckTreePath, map[string]string{
			"/": "", "/home/x": "", "/C/Users/x": "", "/a/..b": "", "/a/./b": "",
			"home":    `"home" must be an absolute path inside the snapshot`,
			`C:\x`:    `"C:\\x" must be an absolute path inside the snapshot`,
			"/a/../b": `"/a/../b" must not contain '..'`,
			"/..":     `"/.." must not contain '..'`,
			"":        "empty value",
			"/a\nb":   `"/a\nb" contains control characters`,
		}},
	} {
		for in, want := range tc.cases {
			err := tc.check(in)
			if want == "" && err != nil || want != "" && (err == nil || err.Error() != want || !errors.Is(err, ErrBadArgs)) {
				t.Errorf("%s(%q) = %v, want %q", name, in, err, want)
			}
		}
	}
}

func TestValidSnapshotRef(t *testing.T) {
	for s, want := range map[string]bool{
		"latest": true, hex8: true, hex64: true, hex8 + "0": true,
		"": false, "0123abc": false, hex64 + "0": false, "0123ABCD": false, "0123abcg": false, "Latest": false, "latest:/x": false,
	} {
		if ValidSnapshotRef(s) != want {
			t.Errorf("ValidSnapshotRef(%q) = %v", s, !want)
		}
	}
}
