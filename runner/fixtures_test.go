package runner

import (
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"
)

// The fixtures in testdata/<version>/ are real output of restic 0.14.0 and
// 0.18.1 (testdata/regen.sh). Their repository and data lived under
// fixtureDir: three snapshots of fixtureDir/src, two of host h1 (tag t1),
// one of h2; see regen.sh for every command.
const fixtureDir = "/tmp/restic-manager-fixture"

var fixtureVersions = []string{"0.14.0", "0.18.1"}

// fixtureRun feeds a fixture through the operation's parsing, in chunks
// of random sizes, and returns the outcome.
func fixtureRun(t *testing.T, version, name string, spec Spec, op operation) Result {
	t.Helper()
	if op == nil {
		op = operations[spec.Kind]
	}
	stdout := readFixture(t, version+"/"+name+".stdout")
	stderr := readFixture(t, version+"/"+name+".stderr")
	code, err := strconv.Atoi(strings.TrimSpace(string(readFixture(t, version+"/"+name+".exit"))))
	if err != nil {
		t.Fatal(err)
	}
	out := newOutput(newRedactor(spec.Repo))
	if p, ok := op.(parsingOp); ok {
		out.parser = p.newParser(&spec)
	}
	if op.progress() {
		out.progress = &throttle{interval: time.Hour, now: time.Now, deliver: func(Progress) {}}
	}
	rng := rand.New(rand.NewPCG(uint64(len(stdout)), uint64(len(stderr))))
	sw := newLineWriter(out.stdoutLine)
	if b, ok := op.(bigOutput); ok {
		sw.max = b.maxStdoutLine()
	}
	feed(sw, stdout, rng)
	feed(newLineWriter(out.stderrLine), stderr, rng)
	res := outcome(context.Background(), &spec, op, out, code, false, Result{})
	res.StderrTail = out.tail.String()
	return res
}

// decodeOutput decodes res.Output strictly into v.
func decodeOutput(t *testing.T, res Result, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(string(res.Output)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("Output %s: %v", res.Output, err)
	}
}

func forEachVersion(t *testing.T, fn func(t *testing.T, v string)) {
	for _, v := range fixtureVersions {
		t.Run(v, func(t *testing.T) { fn(t, v) })
	}
}

// fixtureSnapshots is the snapshots fixture, oldest first.
func fixtureSnapshots(t *testing.T, v string) []Snapshot {
	t.Helper()
	res := fixtureRun(t, v, "snapshots", Spec{Kind: KindSnapshots}, nil)
	var snaps []Snapshot
	decodeOutput(t, res, &snaps)
	return snaps
}

func TestFixtureSnapshots(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		res := fixtureRun(t, v, "snapshots", Spec{Kind: KindSnapshots}, nil)
		if res.Status != StatusSucceeded {
			t.Fatalf("%+v", res)
		}
		var snaps []Snapshot
		decodeOutput(t, res, &snaps)
		if len(snaps) != 3 {
			t.Fatalf("%d snapshots", len(snaps))
		}
		for i, s := range snaps {
			want := []string{"h1", "h1", "h2"}[i]
			if !isHex64(s.ID) || s.ShortID != s.ID[:8] || s.Hostname != want || s.Time.IsZero() ||
				len(s.Paths) != 1 || s.Paths[0] != fixtureDir+"/src" || !isHex64(s.Tree) {
				t.Errorf("snapshot %d: %+v", i, s)
			}
			if (v == "0.18.1") != (s.Summary != nil) || (v == "0.18.1") != (s.ProgramVersion != "") {
				t.Errorf("snapshot %d of %s: summary %s, program_version %q", i, v, s.Summary, s.ProgramVersion)
			}
		}
		if !slices.Equal(snaps[0].Tags, []string{"t1"}) || snaps[2].Tags != nil || snaps[1].Parent != snaps[0].ID {
			t.Errorf("tags/parent: %+v", snaps)
		}
		res = fixtureRun(t, v, "snapshots-h2", Spec{Kind: KindSnapshots}, nil)
		snaps = nil
		decodeOutput(t, res, &snaps)
		if len(snaps) != 1 || snaps[0].Hostname != "h2" {
			t.Errorf("h2: %+v", snaps)
		}
	})
}

func TestFixtureStats(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		res := fixtureRun(t, v, "stats", Spec{Kind: KindStats}, nil)
		var st struct {
			TotalSize      uint64 `json:"total_size"`
			TotalFileCount uint64 `json:"total_file_count"`
			SnapshotsCount int    `json:"snapshots_count"`
		}
		decodeOutput(t, res, &st)
		// Restore size: 3 snapshots of 3 files each; 4+4+6 bytes, then
		// 8+4+4 twice.
		if res.Status != StatusSucceeded || st.SnapshotsCount != 3 || st.TotalSize != 14+16+16 || st.TotalFileCount == 0 {
			t.Errorf("%+v: %s", res, res.Output)
		}
		res = fixtureRun(t, v, "stats-raw", Spec{Kind: KindStats, Stats: StatsArgs{Mode: "raw-data"}}, nil)
		var raw map[string]any
		if err := json.Unmarshal(res.Output, &raw); err != nil || res.Status != StatusSucceeded {
			t.Fatalf("%+v: %v", res, err)
		}
		_, hasRatio := raw["compression_ratio"]
		if raw["snapshots_count"] != 3.0 || raw["total_blob_count"].(float64) == 0 || hasRatio != (v == "0.18.1") {
			t.Errorf("raw-data: %s", res.Output)
		}
	})
}

func TestFixtureDiff(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		snaps := fixtureSnapshots(t, v)
		spec := Spec{Kind: KindDiff, Diff: DiffArgs{SnapshotA: snaps[0].ID, SnapshotB: snaps[1].ID}}
		res := fixtureRun(t, v, "diff", spec, nil)
		var d DiffOutput
		decodeOutput(t, res, &d)
		want := []DiffChange{
			{fixtureDir + "/src/a.txt", "M"},
			{fixtureDir + "/src/sub/deeper/c.txt", "-"},
			{fixtureDir + "/src/sub/new.txt", "+"},
		}
		if res.Status != StatusSucceeded || !slices.Equal(d.Changes, want) || d.Truncated || d.TotalChanges != 3 {
			t.Errorf("%+v: %+v", res, d)
		}
		s := d.Statistics
		if s.SourceSnapshot != snaps[0].ID || s.TargetSnapshot != snaps[1].ID || s.ChangedFiles != 1 ||
			s.Added.Files != 1 || s.Removed.Files != 1 || s.Added.Bytes == 0 || s.Added.TreeBlobs == 0 {
			t.Errorf("statistics %+v", s)
		}
	})
}

func TestFixtureLs(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		snaps := fixtureSnapshots(t, v)
		spec := Spec{Kind: KindLs, Ls: LsArgs{SnapshotID: snaps[0].ID, Path: fixtureDir + "/src/sub/"}}
		res := fixtureRun(t, v, "ls", spec, nil)
		var ls LsOutput
		decodeOutput(t, res, &ls)
		if res.Status != StatusSucceeded || ls.Snapshot.ID != snaps[0].ID || ls.Path != fixtureDir+"/src/sub" || ls.Truncated || ls.TotalEntries != 2 || len(ls.Entries) != 2 {
			t.Fatalf("%+v: %s", res, res.Output)
		}
		b, d := ls.Entries[0], ls.Entries[1]
		if b.Name != "b.txt" || b.Type != "file" || b.Size != 4 || b.Path != fixtureDir+"/src/sub/b.txt" || b.Mtime.IsZero() || b.Permissions != "-rw-r--r--" || b.Mode != 0o644 {
			t.Errorf("b.txt: %+v", b)
		}
		if d.Name != "deeper" || d.Type != "dir" || d.Size != 0 || !d.Mode.IsDir() {
			t.Errorf("deeper: %+v", d)
		}
		if (v == "0.18.1") != (b.Inode != 0) {
			t.Errorf("inode %d", b.Inode)
		}

		spec.Ls.Path = ""
		res = fixtureRun(t, v, "ls-root", spec, nil)
		ls = LsOutput{}
		decodeOutput(t, res, &ls)
		if res.Status != StatusSucceeded || ls.Path != "/" || len(ls.Entries) != 1 || ls.Entries[0].Path != "/tmp" {
			t.Errorf("root: %+v: %s", res, res.Output)
		}
		// The same output, asked for another directory: not found, or a file.
		for path, want := range map[string]string{
			"/nonexistent":                "/nonexistent: no such directory in snapshot " + snaps[0].ShortID,
			fixtureDir + "/src/sub/b.txt": fixtureDir + "/src/sub/b.txt is not a directory in snapshot " + snaps[0].ShortID + " (file)",
		} {
			spec.Ls.Path = path
			res = fixtureRun(t, v, "ls-all", spec, nil)
			if res.Status != StatusFailed || res.Error != want || res.Output != nil {
				t.Errorf("%s: %+v", path, res)
			}
		}
	})
}

// TestFixtureLsStream: the stream of the whole snapshot, node by node.
func TestFixtureLsStream(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		var nodes []string
		op := &opLsStream{fn: func(n Node) error {
			nodes = append(nodes, n.Type+" "+n.Path)
			return nil
		}, cancel: func() {}}
		res := fixtureRun(t, v, "ls-all", Spec{Kind: KindLs}, op)
		want := []string{"dir /tmp", "dir " + fixtureDir, "dir " + fixtureDir + "/src", "file " + fixtureDir + "/src/a.txt",
			"dir " + fixtureDir + "/src/sub", "file " + fixtureDir + "/src/sub/b.txt", "dir " + fixtureDir + "/src/sub/deeper",
			"file " + fixtureDir + "/src/sub/deeper/c.txt"}
		if res.Status != StatusSucceeded || !slices.Equal(nodes, want) {
			t.Errorf("%+v\n%q", res, nodes)
		}
		if strings.Contains(res.StderrTail, "node") {
			t.Errorf("nodes in the tail: %s", res.StderrTail)
		}
	})
}

func TestFixtureRestore(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		snaps := fixtureSnapshots(t, v)
		spec := Spec{Kind: KindRestore, Restore: RestoreArgs{SnapshotID: snaps[1].ID, Target: fixtureDir + "/target", Verify: true}}
		res := fixtureRun(t, v, "restore", spec, nil)
		var ro RestoreOutput
		decodeOutput(t, res, &ro)
		if res.Status != StatusSucceeded || ro.Errors != 0 {
			t.Fatalf("%+v", res)
		}
		if v == "0.14.0" {
			// No JSON: the count of verified files from the text only.
			if ro.FilesVerified == nil || *ro.FilesVerified != 3 || ro.FilesRestored != nil {
				t.Errorf("Output %s", res.Output)
			}
		} else if ro.FilesRestored == nil || *ro.FilesRestored == 0 || *ro.BytesRestored != 16 || *ro.TotalBytes != 16 || *ro.FilesSkipped != 0 || ro.FilesVerified != nil {
			t.Errorf("Output %s", res.Output)
		}

		spec.Restore = RestoreArgs{SnapshotID: snaps[0].ID, Target: fixtureDir + "/target2", Include: []string{fixtureDir + "/src/sub"}}
		res = fixtureRun(t, v, "restore-include", spec, nil)
		want := `{}`
		if v == "0.18.1" {
			want = `{"total_files":4,"files_restored":7,"files_skipped":0,"files_deleted":0,"total_bytes":10,"bytes_restored":10,"bytes_skipped":0,"seconds_elapsed":0}`
		}
		if res.Status != StatusSucceeded || string(res.Output) != want {
			t.Errorf("include: %+v: %s", res, res.Output)
		}
	})
}

func TestFixtureForget(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		snaps := fixtureSnapshots(t, v)
		h1 := []string{snaps[1].ID, snaps[0].ID} // restic lists the newest first
		h2 := []string{snaps[2].ID}

		spec := Spec{Kind: KindForget, Forget: ForgetArgs{KeepLast: 1, KeepWithin: "1h", DryRun: true}}
		res := fixtureRun(t, v, "forget-dry", spec, nil)
		var fo ForgetOutput
		decodeOutput(t, res, &fo)
		if res.Status != StatusSucceeded || len(fo.Groups) != 2 || fo.Prune != nil {
			t.Fatalf("%+v", res)
		}
		groups := map[string]ForgetGroup{}
		for _, g := range fo.Groups {
			groups[g.Host] = g
			if !slices.Equal(g.Paths, []string{fixtureDir + "/src"}) || len(g.Remove) != 0 || g.Remove == nil || g.Tags == nil {
				t.Errorf("group %+v", g)
			}
			// Reasons carry the full id: restic's own from 0.17, matched
			// by time and tree before.
			for i, r := range g.Reasons {
				if r.ID != g.Keep[i] {
					t.Errorf("%s reason %d: %+v, keep %v", g.Host, i, r, g.Keep)
				}
			}
		}
		if !slices.Equal(groups["h1"].Keep, h1) || !slices.Equal(groups["h2"].Keep, h2) {
			t.Errorf("keep: %+v", groups)
		}
		if r := groups["h1"].Reasons; len(r) != 2 || !slices.Equal(r[0].Matches, []string{"within 1h", "last snapshot"}) || !slices.Equal(r[1].Matches, []string{"within 1h"}) {
			t.Errorf("reasons %+v", r)
		}

		spec.Forget = ForgetArgs{KeepLast: 1}
		res = fixtureRun(t, v, "forget", spec, nil)
		fo = ForgetOutput{}
		decodeOutput(t, res, &fo)
		var removed, kept []string
		for _, g := range fo.Groups {
			removed = append(removed, g.Remove...)
			kept = append(kept, g.Keep...)
		}
		slices.Sort(kept)
		wantKept := []string{snaps[1].ID, snaps[2].ID}
		slices.Sort(wantKept)
		if res.Status != StatusSucceeded || !slices.Equal(removed, []string{snaps[0].ID}) || !slices.Equal(kept, wantKept) {
			t.Errorf("forget: removed %v, kept %v", removed, kept)
		}

		// With --prune: the JSON first, then prune's text.
		spec.Forget = ForgetArgs{KeepLast: 1, Hosts: []string{"h1"}, Prune: true}
		res = fixtureRun(t, v, "forget-prune", spec, nil)
		fo = ForgetOutput{}
		decodeOutput(t, res, &fo)
		if res.Status != StatusSucceeded || len(fo.Groups) != 1 || len(fo.Groups[0].Remove) != 1 || fo.Groups[0].Remove[0] != snaps[1].ID {
			t.Fatalf("forget --prune: %+v", fo)
		}
		checkPruneOutput(t, fo.Prune, true)
		if !strings.Contains(res.StderrTail, "total prune:") || strings.Contains(res.StderrTail, `"keep"`) {
			t.Errorf("tail %q", res.StderrTail)
		}

		// Without a rule (refused by argv): 0.14 printed nothing and
		// removed nothing, 0.18 fails.
		spec.Forget = ForgetArgs{}
		res = fixtureRun(t, v, "forget-none", spec, nil)
		if v == "0.14.0" && (res.Status != StatusSucceeded || string(res.Output) != `{"groups":[]}`) ||
			v == "0.18.1" && (res.Status != StatusFailed || res.Error != "no policy was specified, no snapshots will be removed") {
			t.Errorf("no rule: %+v", res)
		}
	})
}

// checkPruneOutput checks the figures read from prune's text.
func checkPruneOutput(t *testing.T, p *PruneOutput, removed bool) {
	t.Helper()
	if p == nil || p.ToRepack == nil || p.ThisRemoves == nil || p.ToDelete == nil || p.TotalPrune == nil || p.Remaining == nil || p.UnusedAfterBytes == nil {
		t.Fatalf("prune output %+v", p)
	}
	if p.TotalPrune.Blobs != p.ThisRemoves.Blobs+p.ToDelete.Blobs || p.Remaining.Blobs == 0 || p.Remaining.Bytes == 0 {
		t.Errorf("prune figures %+v %+v %+v %+v", *p.ThisRemoves, *p.ToDelete, *p.TotalPrune, *p.Remaining)
	}
	// Sizes are rounded to 3 decimals of KiB: allow 1 byte per term.
	if sum := p.ThisRemoves.Bytes + p.ToDelete.Bytes; sum+3 < p.TotalPrune.Bytes || sum > p.TotalPrune.Bytes+3 {
		t.Errorf("prune sizes %d + %d vs %d", p.ThisRemoves.Bytes, p.ToDelete.Bytes, p.TotalPrune.Bytes)
	}
	if removed != (p.TotalPrune.Blobs > 0) || removed != (p.PacksRemoved != nil && *p.PacksRemoved > 0) {
		t.Errorf("removed %v: total %+v, packs %v", removed, *p.TotalPrune, p.PacksRemoved)
	}
}

func TestFixturePrune(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		res := fixtureRun(t, v, "prune", Spec{Kind: KindPrune}, nil)
		var po PruneOutput
		decodeOutput(t, res, &po)
		if res.Status != StatusSucceeded {
			t.Fatalf("%+v", res)
		}
		checkPruneOutput(t, &po, true)
		res = fixtureRun(t, v, "prune-nothing", Spec{Kind: KindPrune}, nil)
		po = PruneOutput{}
		decodeOutput(t, res, &po)
		checkPruneOutput(t, &po, false)

		// Locked by a running backup: 0.14 exits 1 and says so; 0.18 exits 11.
		res = fixtureRun(t, v, "locked", Spec{Kind: KindPrune}, nil)
		if res.Status != StatusFailed || res.Cause != CauseLocked || res.Output != nil ||
			!strings.HasPrefix(res.Error, "failed to lock the repository: unable to create lock in backend: repository is already locked by PID ") {
			t.Errorf("locked: %+v", res)
		}
	})
}

func TestFixtureCheck(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		for _, name := range []string{"check", "check-subset"} {
			res := fixtureRun(t, v, name, Spec{Kind: KindCheck}, nil)
			if res.Status != StatusSucceeded || string(res.Output) != `{"ok":true,"num_errors":0,"messages":[]}` {
				t.Errorf("%s: %+v: %s", name, res, res.Output)
			}
		}
		res := fixtureRun(t, v, "check-errors", Spec{Kind: KindCheck}, nil)
		var co CheckOutput
		decodeOutput(t, res, &co)
		// 0.18: its exit_error message; 0.14: "restic failed: " and its Fatal line.
		if res.Status != StatusFailed || res.ExitCode != 1 || !strings.HasSuffix(res.Error, "repository contains errors") || res.Cause != "" {
			t.Errorf("%+v", res)
		}
		if co.OK || co.NumErrors < 1 || len(co.Messages) < 2 || !strings.HasPrefix(co.Messages[0], "error for tree ") ||
			!strings.Contains(strings.Join(co.Messages, "\n"), "ciphertext verification failed") {
			t.Errorf("output %+v", co)
		}
		if v == "0.18.1" && (len(co.BrokenPacks) != 1 || !isHex64(co.BrokenPacks[0])) {
			t.Errorf("broken packs %v", co.BrokenPacks)
		}
	})
}

func TestFixtureUnlock(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		for name, want := range map[string]string{
			"unlock":      `{"removed":1}`, // the stale lock of a killed backup
			"unlock-live": `{"removed":0}`, // a running backup's lock stays
			"unlock-none": `{"removed":0}`,
		} {
			if v == "0.14.0" {
				want = `{}` // "successfully removed locks", always
			}
			res := fixtureRun(t, v, name, Spec{Kind: KindUnlock}, nil)
			if res.Status != StatusSucceeded || string(res.Output) != want {
				t.Errorf("%s: %+v: %s", name, res, res.Output)
			}
		}
	})
}

func TestFixtureLock(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		ids := strings.Fields(string(readFixture(t, v+"/list-locks.stdout")))
		if len(ids) != 1 || !isHex64(ids[0]) {
			t.Fatalf("list locks: %q", ids)
		}
		var l LockInfo
		if err := json.Unmarshal(readFixture(t, v+"/cat-lock.stdout"), &l); err != nil {
			t.Fatal(err)
		}
		if l.Hostname != "fixture-host" || l.Exclusive || l.PID <= 0 || l.Time.IsZero() || l.Username == "" {
			t.Errorf("%+v", l)
		}
		host, _ := os.Hostname()
		// Another host's lock is stale by age only.
		if lockStale(l, host, l.Time.Add(time.Minute)) || !lockStale(l, host, l.Time.Add(31*time.Minute)) {
			t.Errorf("stale by age")
		}
		// On this host: stale when its process is gone.
		l.Hostname, l.PID = host, os.Getpid()
		if lockStale(l, host, l.Time.Add(time.Minute)) {
			t.Errorf("live process: stale")
		}
		l.PID = 1 << 30
		if !lockStale(l, host, l.Time.Add(time.Minute)) {
			t.Errorf("missing process: not stale")
		}
	})
}

// TestFixtureCauses: restic before 0.17 exits 1 for a missing repository, a
// wrong password and a lock; the runner tells them by their text.
func TestFixtureCauses(t *testing.T) {
	forEachVersion(t, func(t *testing.T, v string) {
		for name, want := range map[string]struct{ cause, errPrefix string }{
			"wrong-password": {CauseWrongPassword, "wrong password or no key found"},
			"no-repo":        {CauseNoRepository, "repository does not exist: unable to open config file: stat " + fixtureDir + "/no-repo/config: no such file or directory"},
		} {
			res := fixtureRun(t, v, name, Spec{Kind: KindSnapshots}, nil)
			if res.Status != StatusFailed || res.Cause != want.cause || res.Error != want.errPrefix {
				t.Errorf("%s: %+v", name, res)
			}
		}
	})
}

// TestFixturesComplete: every fixture has its three files.
func TestFixturesComplete(t *testing.T) {
	for _, v := range fixtureVersions {
		names, _ := filepath.Glob(filepath.Join("testdata", v, "*.exit"))
		if len(names) < 20 {
			t.Errorf("%s: %d fixtures", v, len(names))
		}
		for _, n := range names {
			base := strings.TrimSuffix(n, ".exit")
			for _, ext := range []string{".stdout", ".stderr"} {
				if _, err := os.Stat(base + ext); err != nil {
					t.Error(err)
				}
			}
		}
	}
}
