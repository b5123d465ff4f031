package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

func TestCopyRestic018(t *testing.T) {
	t.Parallel()
	testCopy(t, versionedRunner(t, testenv.Restic(t), "0.18.1"))
}

func TestCopyRestic014(t *testing.T) {
	t.Parallel()
	testCopy(t, versionedRunner(t, testenv.Restic014(t), "0.14.0"))
}

// snapshotsOf lists a repository's snapshots with restic itself.
func snapshotsOf(t *testing.T, bin string, repo Repo) []Snapshot {
	t.Helper()
	var snaps []Snapshot
	if err := json.Unmarshal(resticWith(t, bin, repo, "snapshots", "--json"), &snaps); err != nil {
		t.Fatal(err)
	}
	return snaps
}

// testCopy copies between two local repositories with different passwords.
func testCopy(t *testing.T, r *Runner) {
	r.Locks = &RepoLocks{}
	bin := r.Restic
	src := initRepo(t, r)
	dst := Repo{URL: filepath.Join(t.TempDir(), "dst"), Password: "the destination's own password"}
	runOK(t, r, Spec{Kind: KindInit, Repo: dst})
	data := filepath.Join(t.TempDir(), "data")
	genTree(t, data, 20, 1, 1<<20)
	backup := func(host string) string {
		t.Helper()
		return runOK(t, r, Spec{Kind: KindBackup, Repo: src, Backup: BackupArgs{Paths: []string{data}, Hostname: host}}).SnapshotID
	}
	h1a := backup("h1")
	if err := os.WriteFile(filepath.Join(data, "new.txt"), []byte("second snapshot"), 0o644); err != nil {
		t.Fatal(err)
	}
	h1b := backup("h1")
	h2 := backup("h2")

	copyOf := func(args CopyArgs) (Result, wire.CopyOutput) {
		t.Helper()
		args.To = dst
		var progress []Progress
		res := r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: src, Copy: args}, Hooks{OnProgress: func(p Progress) { progress = append(progress, p) }})
		var out wire.CopyOutput
		if res.Output != nil {
			if err := json.Unmarshal(res.Output, &out); err != nil {
				t.Fatalf("Output %s: %v", res.Output, err)
			}
		}
		t.Logf("copy %v: %s %s %q; %d progress", args.SnapshotIDs, res.Status, res.Output, res.Error, len(progress))
		return res, out
	}

	// This host's snapshots: both of h1, not h2's.
	res, out := copyOf(CopyArgs{Hostname: "h1"})
	if res.Status != StatusSucceeded || out.Skipped != 0 || !sameIDs(out.Copied, h1a, h1b) {
		t.Fatalf("copy h1: %+v", res)
	}
	if !strings.Contains(string(res.Output), `"copied":[`) {
		t.Errorf("Output %s", res.Output)
	}
	snaps := snapshotsOf(t, bin, dst)
	if len(snaps) != 2 || snaps[0].Hostname != "h1" || snaps[1].Hostname != "h1" {
		t.Fatalf("destination holds %+v", snaps)
	}

	// Again: restic finds them there and copies nothing.
	res, out = copyOf(CopyArgs{Hostname: "h1"})
	if res.Status != StatusSucceeded || len(out.Copied) != 0 || out.Skipped != 2 || !strings.Contains(string(res.Output), `"copied":[]`) {
		t.Fatalf("second copy h1: %+v", res)
	}
	if n := len(snapshotsOf(t, bin, dst)); n != 2 {
		t.Fatalf("destination holds %d snapshots after the second copy", n)
	}

	// By ID: h2's snapshot and one already there.
	res, out = copyOf(CopyArgs{SnapshotIDs: []string{h2, h1a[:8]}})
	if res.Status != StatusSucceeded || out.Skipped != 1 || !sameIDs(out.Copied, h2) {
		t.Fatalf("copy by ID: %+v", res)
	}
	if n := len(snapshotsOf(t, bin, dst)); n != 3 {
		t.Fatalf("destination holds %d snapshots after the copy by ID", n)
	}

	// An ID the source does not have: restic exits 0 but says so.
	res, _ = copyOf(CopyArgs{SnapshotIDs: []string{"deadbeef"}})
	if res.Status != StatusFailed || !strings.Contains(res.Error, "not in the source repository: deadbeef") {
		t.Errorf("missing ID: %+v", res)
	}

	// A wrong password, on either side: restic does not say which; the
	// runner does.
	wrongDst := dst
	wrongDst.Password = "not the password"
	res = r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: src, Copy: CopyArgs{To: wrongDst, Hostname: "h1"}}, Hooks{})
	if res.Status != StatusFailed || res.Cause != CauseWrongPassword || res.Error != "the destination repository: wrong password or no key found" {
		t.Errorf("wrong destination password: %+v", res)
	}
	wrongSrc := src
	wrongSrc.Password = "not the password"
	res = r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: wrongSrc, Copy: CopyArgs{To: dst, Hostname: "h1"}}, Hooks{})
	if res.Status != StatusFailed || res.Cause != CauseWrongPassword || res.Error != "the source repository: wrong password or no key found" {
		t.Errorf("wrong source password: %+v", res)
	}
	noDst := dst
	noDst.URL = filepath.Join(t.TempDir(), "none")
	res = r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: src, Copy: CopyArgs{To: noDst, Hostname: "h1"}}, Hooks{})
	if res.Status != StatusFailed || res.Cause != CauseNoRepository || !strings.HasPrefix(res.Error, "the destination repository: ") {
		t.Errorf("missing destination: %+v", res)
	}

	// The copy waits for the destination's lock too.
	unlock, _, _ := r.Locks.Lock(context.Background(), repoKey(dst.URL))
	ctx, cancel := context.WithTimeout(testCtx(t), 300*time.Millisecond)
	res = r.Run(ctx, Spec{Kind: KindCopy, Repo: src, Copy: CopyArgs{To: dst, Hostname: "h1"}}, Hooks{})
	cancel()
	unlock()
	if res.Status != StatusCancelled || !res.Waited || !strings.Contains(res.Error, "waiting for the repository lock") {
		t.Errorf("copy behind the destination's lock: %+v", res)
	}
	if n := r.Locks.size(); n != 0 {
		t.Errorf("%d keys left locked", n)
	}

	// A destination initialised with the source's chunker parameters.
	chunked := Repo{URL: filepath.Join(t.TempDir(), "chunked"), Password: "a third password"}
	runOK(t, r, Spec{Kind: KindInit, Repo: chunked, Init: InitArgs{ChunkerFrom: &src}})
	poly := func(repo Repo) string {
		var c struct {
			Poly string `json:"chunker_polynomial"`
		}
		if err := json.Unmarshal(resticWith(t, bin, repo, "cat", "config"), &c); err != nil || c.Poly == "" {
			t.Fatalf("config: %+v, %v", c, err)
		}
		return c.Poly
	}
	if poly(chunked) != poly(src) || poly(dst) == poly(src) {
		t.Errorf("chunker polynomials: source %s, chunked %s, other %s", poly(src), poly(chunked), poly(dst))
	}
}

// sameIDs: got are the short forms of want, in any order.
func sameIDs(got []string, want ...string) bool {
	if len(got) != len(want) {
		return false
	}
	for _, w := range want {
		if !slices.ContainsFunc(got, func(g string) bool { return strings.HasPrefix(w, g) && len(g) >= 8 }) {
			return false
		}
	}
	return true
}

// TestCopyRefused: what the runner refuses before restic starts.
func TestCopyRefused(t *testing.T) {
	r := &Runner{Restic: "/nonexistent/restic"}
	src := Repo{URL: "/src", Password: "pw-src"}
	dst := Repo{URL: "/dst", Password: "pw-dst"}
	for name, tc := range map[string]struct {
		src  Repo
		args CopyArgs
		want string
	}{
		"no filter":       {src, CopyArgs{To: dst}, "names its snapshots or their host"},
		"same repository": {src, CopyArgs{To: Repo{URL: " /src", Password: "x-pw"}, Hostname: "h"}, "destination is its source"},
		"no destination":  {src, CopyArgs{Hostname: "h"}, "destination repository: repository URL is empty"},
		"bad ID":          {src, CopyArgs{To: dst, SnapshotIDs: []string{"--host=x"}}, "refused"},
		"bad host":        {src, CopyArgs{To: dst, Hostname: "--tag=x"}, "refused"},
		"env clash": {Repo{URL: "s3:a/b", Password: "p1", Env: map[string]string{"AWS_ACCESS_KEY_ID": "one", "AWS_SECRET_ACCESS_KEY": "same"}},
			CopyArgs{To: Repo{URL: "s3:c/d", Password: "p2", Env: map[string]string{"AWS_ACCESS_KEY_ID": "two", "AWS_SECRET_ACCESS_KEY": "same"}}, Hostname: "h"},
			"set AWS_ACCESS_KEY_ID to different values"},
		"from env": {src, CopyArgs{To: Repo{URL: "/d", Password: "p", Env: map[string]string{"RESTIC_FROM_PASSWORD": "x"}}, Hostname: "h"}, "refused"},
	} {
		res := r.Run(context.Background(), Spec{Kind: KindCopy, Repo: tc.src, Copy: tc.args}, Hooks{})
		if res.Status != StatusFailed || res.ExitCode != -1 || !strings.Contains(res.Error, tc.want) {
			t.Errorf("%s: %+v", name, res)
		}
	}
	// Shared credentials (one S3 account, two buckets) are fine.
	spec := Spec{Kind: KindCopy, Repo: Repo{URL: "s3:a/b", Password: "p1", Env: map[string]string{"AWS_ACCESS_KEY_ID": "one"}},
		Copy: CopyArgs{To: Repo{URL: "s3:c/d", Password: "p2", Env: map[string]string{"AWS_ACCESS_KEY_ID": "one"}}, SnapshotIDs: []string{"0123abcd"}}}
	argv, err := opCopy{}.argv(&spec, resticVersion{})
	if err != nil || !slices.Equal(argv, []string{"copy", "-v", "--", "0123abcd"}) {
		t.Errorf("argv %q, %v", argv, err)
	}
	// An init taking the chunker parameters of another repository checks it too.
	res := r.Run(context.Background(), Spec{Kind: KindInit, Repo: src, Init: InitArgs{ChunkerFrom: &Repo{URL: "/other"}}}, Hooks{})
	if res.Status != StatusFailed || !strings.Contains(res.Error, "chunker parameters from: repository password is empty") {
		t.Errorf("init from a repository without password: %+v", res)
	}
}

// TestCopyParser reads restic's text, progress lines included.
func TestCopyParser(t *testing.T) {
	out := newOutput(newRedactor(Repo{}))
	p := opCopy{}.newParser(&Spec{})
	out.parser = p
	var got []Progress
	out.progress = &throttle{interval: time.Nanosecond, now: time.Now, deliver: func(p Progress) { got = append(got, p) }}
	for _, l := range []string{
		"",
		"snapshot 1949f3a8 of [/data] at 2026-12-07 04:00:00.316209013 +0000 UTC by root@h1",
		"  copy started, this may take a while...",
		"[0:01] 42.50%  17 / 40 packs copied",
		"[1:02:03] 100.00%  40 / 40 packs copied",
		"snapshot d9b1f66d saved",
		"snapshot d2ba8e2a of [/data] at 2026-12-07 03:59:59.596103307 +0000 UTC)",
		"skipping source snapshot d2ba8e2a, was already copied to snapshot 000de438",
		`Ignoring "cafebabe": no matching ID found for prefix "cafebabe"`,
	} {
		out.stdoutLine([]byte(l), false)
	}
	var res Result
	opCopy{}.complete(out, 0, &res)
	if res.Status != StatusPartial || string(res.Output) != `{"copied":["1949f3a8"],"skipped":1}` || res.Error != "not in the source repository: cafebabe" {
		t.Errorf("%+v", res)
	}
	if len(got) != 2 || got[0].Percent != 42.5 || got[0].SecondsElapsed != 1 || got[1].SecondsElapsed != 3723 {
		t.Errorf("progress %+v", got)
	}
	if strings.Contains(out.tail.String(), "packs copied") {
		t.Errorf("progress in the tail: %q", out.tail.String())
	}
}

// TestCopySecretsNotExposed: both repositories' URLs and passwords reach
// restic through private files only.
func TestCopySecretsNotExposed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	t.Parallel()
	r, logs := newRunner(t)
	src := Repo{URL: filepath.Join(t.TempDir(), "src-Secret-path"), Password: "src-Secret-password"}
	dst := Repo{URL: filepath.Join(t.TempDir(), "dst-Secret-path"), Password: "dst-Secret-password"}
	runOK(t, r, Spec{Kind: KindInit, Repo: src})
	data := filepath.Join(t.TempDir(), "data")
	genTree(t, data, 5, 0, 0)
	runOK(t, r, Spec{Kind: KindBackup, Repo: src, Backup: BackupArgs{Paths: []string{data}, Hostname: "h"}})
	secrets := []string{src.URL, src.Password, dst.URL, dst.Password}

	var mu sync.Mutex
	checked := 0
	check := func(pid int) {
		mu.Lock()
		defer mu.Unlock()
		checked++
		cmdline, environ := procEntries(t, pid)
		if len(cmdline) == 0 {
			t.Errorf("no cmdline for %d", pid)
		}
		for _, s := range secrets {
			if bytes.Contains(cmdline, []byte(s)) || bytes.Contains(environ, []byte(s)) {
				t.Errorf("%q in restic's command line or environment", s)
			}
		}
		var contents []string
		for _, name := range leftovers(t, r.TempDir) {
			b, _ := os.ReadFile(filepath.Join(r.TempDir, name))
			contents = append(contents, string(b))
		}
		if len(contents) != 4 {
			t.Errorf("secret files hold %q", contents)
		}
	}
	// The chunker-parameter init, then the copy.
	res := r.Run(testCtx(t), Spec{Kind: KindInit, Repo: dst, Init: InitArgs{ChunkerFrom: &src}}, Hooks{OnProcess: check})
	if res.Status != StatusSucceeded {
		t.Fatalf("init: %+v", res)
	}
	res = r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: src, Copy: CopyArgs{To: dst, Hostname: "h"}}, Hooks{OnProcess: check})
	if res.Status != StatusSucceeded || checked != 2 {
		t.Fatalf("copy: %+v (checked %d)", res, checked)
	}
	if l := leftovers(t, r.TempDir); len(l) != 0 {
		t.Errorf("left in TempDir: %v", l)
	}
	// A failure's text and the log keep the passwords out too (a local
	// path is logged: only a URL's user information is a secret there).
	wrong := dst
	wrong.Password = "wrong-Secret-password"
	res = r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: src, Copy: CopyArgs{To: wrong, Hostname: "h"}}, Hooks{})
	b, _ := json.Marshal(res)
	for _, s := range []string{src.Password, dst.Password, wrong.Password} {
		if bytes.Contains(b, []byte(s)) || strings.Contains(logs.String(), s) {
			t.Errorf("%q in the result or the log: %s", s, b)
		}
	}
}
