//go:build unix

package runner

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/agentcmd"
	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// sourceRunners are the three ways a source reaches restic: restic 0.18
// running the command, restic 0.18 fed through the agent's pipe (a source
// with a user), and restic 0.14 fed through the pipe.
func sourceRunners(t *testing.T) map[string]struct {
	r    *Runner
	user string
} {
	user := ""
	if os.Geteuid() == 0 {
		user = "root" // forces the pipe on 0.18: restic cannot switch users
	}
	return map[string]struct {
		r    *Runner
		user string
	}{
		"0.18-from-command": {versionedRunner(t, testenv.Restic(t), "0.18.1"), ""},
		"0.18-pipe":         {versionedRunner(t, testenv.Restic(t), "0.18.1"), user},
		"0.14-pipe":         {versionedRunner(t, testenv.Restic014(t), "0.14.0"), ""},
	}
}

func shSource(name, script, user string) Source {
	return Source{Name: name, Filename: name + ".sql", Cmd: agentcmd.Spec{Name: name, Argv: []string{"sh", "-c", script}, User: user,
		Env: map[string]string{"DUMP_SECRET": "s3cret-value"}, Timeout: time.Minute}}
}

func TestSourceBackup(t *testing.T) {
	for name, sr := range sourceRunners(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			r := sr.r
			if name == "0.18-pipe" && sr.user == "" {
				t.Log("not root: the pipe on 0.18 is exercised by 0.14 only")
				return
			}
			repo := initRepo(t, r)
			data := t.TempDir()
			genTree(t, data, 5, 0, 0)
			// The dump sees its environment; 200 KiB so that the pipe fills.
			script := `echo "-- dump with $DUMP_SECRET"; head -c 204800 /dev/zero | tr '\0' 'x'; echo; echo done`
			res := r.Run(testCtx(t), Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{data}, Tags: []string{"nightly"},
				Sources: []Source{shSource("pg", script, sr.user)}}}, Hooks{})
			if res.Status != StatusSucceeded {
				t.Fatalf("%+v", res)
			}
			var out wire.BackupOutput
			decodeOutput(t, res, &out)
			if len(out.Snapshots) != 2 || out.Snapshots[0].Source != "" || out.Snapshots[1].Source != "pg" || out.Snapshots[1].SnapshotID == "" {
				t.Fatalf("output %+v", out)
			}
			if want := uint64(len("-- dump with s3cret-value\n") + 204800 + len("\ndone\n")); out.Snapshots[1].Bytes != want {
				t.Errorf("source bytes %d, want %d", out.Snapshots[1].Bytes, want)
			}
			if res.SnapshotID != out.Snapshots[0].SnapshotID {
				t.Errorf("result snapshot %s, want the paths' %s", res.SnapshotID, out.Snapshots[0].SnapshotID)
			}
			var snaps []struct {
				ID    string   `json:"id"`
				Tags  []string `json:"tags"`
				Paths []string `json:"paths"`
			}
			if err := json.Unmarshal(resticDirect(t, repo, "snapshots", "--json"), &snaps); err != nil {
				t.Fatal(err)
			}
			var src string
			for _, s := range snaps {
				if wire.SourceOfTags(s.Tags) == "pg" {
					src = s.ID
					if strings.Join(s.Tags, ",") != "nightly,source:pg" && strings.Join(s.Tags, ",") != "source:pg,nightly" {
						t.Errorf("source snapshot tags %v", s.Tags)
					}
					if len(s.Paths) != 1 || s.Paths[0] != "/pg.sql" {
						t.Errorf("source snapshot paths %v, want /pg.sql", s.Paths)
					}
				}
			}
			if len(snaps) != 2 || src == "" {
				t.Fatalf("snapshots %+v", snaps)
			}
			dump := string(resticDirect(t, repo, "dump", src, "/pg.sql"))
			if !strings.HasPrefix(dump, "-- dump with s3cret-value\nxxx") || !strings.HasSuffix(dump, "\ndone\n") {
				t.Fatalf("dump restored as %d bytes: %.40q…", len(dump), dump)
			}
		})
	}
}

// A dump that fails fails the job with its stderr, and leaves no snapshot.
func TestSourceFailureLeavesNoSnapshot(t *testing.T) {
	for name, sr := range sourceRunners(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "0.18-pipe" && sr.user == "" {
				return
			}
			r := sr.r
			repo := initRepo(t, r)
			// Output first, then the failure: the partial dump must not
			// become a snapshot.
			script := `echo "CREATE TABLE t;"; sleep 0.3; echo "connecting with $DUMP_SECRET" >&2; echo 'pg_dump: error: password authentication failed for user "app"' >&2; exit 1`
			res := r.Run(testCtx(t), Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Sources: []Source{shSource("pg", script, sr.user)}}}, Hooks{})
			if res.Status != StatusFailed || !strings.Contains(res.Error, "source pg: the dump command failed") ||
				!strings.Contains(res.Error, "password authentication failed") {
				t.Fatalf("%+v", res)
			}
			t.Logf("error: %s", res.Error)
			if strings.Contains(res.Error+res.StderrTail, "s3cret-value") {
				t.Errorf("the dump's environment reached the result: %q %q", res.Error, res.StderrTail)
			}
			if res.SnapshotID != "" {
				t.Errorf("snapshot %s reported for a failed dump", res.SnapshotID)
			}
			if snaps := strings.TrimSpace(string(resticDirect(t, repo, "snapshots", "--json"))); snaps != "[]" {
				t.Fatalf("snapshots after a failed dump: %s", snaps)
			}
			if locks := strings.TrimSpace(string(resticDirect(t, repo, "list", "locks", "--no-lock"))); locks != "" {
				t.Errorf("locks left: %q", locks)
			}
		})
	}
}

// Cancelling mid-dump ends restic, the dump and everything the dump
// started.
func TestSourceCancelLeavesNoProcess(t *testing.T) {
	for name, sr := range sourceRunners(t) {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			if name == "0.18-pipe" && sr.user == "" {
				return
			}
			r := sr.r
			repo := initRepo(t, r)
			pidFile := filepath.Join(t.TempDir(), "child")
			// A dump that streams forever through a child process.
			script := `sh -c 'while :; do echo row; sleep 0.01; done' & echo $! > ` + pidFile + `; wait`
			ctx, cancel := context.WithCancel(testCtx(t))
			defer cancel()
			done := make(chan Result, 1)
			go func() {
				done <- r.Run(ctx, Spec{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Sources: []Source{shSource("pg", script, sr.user)}}}, Hooks{})
			}()
			child := waitPidFile(t, pidFile)
			time.Sleep(300 * time.Millisecond)
			cancel()
			res := <-done
			if res.Status != StatusCancelled {
				t.Fatalf("%+v", res)
			}
			// restic stopped by itself (its lock removed), not killed after
			// the grace period.
			if res.ExitCode == 128+int(syscall.SIGKILL) {
				t.Errorf("restic was killed after the grace period: %+v", res)
			}
			waitGone(t, child)
			if snaps := strings.TrimSpace(string(resticDirect(t, repo, "snapshots", "--json"))); snaps != "[]" {
				t.Fatalf("snapshots after a cancelled dump: %s", snaps)
			}
		})
	}
}

func waitPidFile(t *testing.T, path string) int {
	t.Helper()
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(path)
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			return n
		}
	}
	t.Fatal("the dump did not start its child")
	return 0
}

// waitGone waits until pid is gone (or a zombie, which is dead).
func waitGone(t *testing.T, pid int) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(pid, 0); err == syscall.ESRCH {
			return
		}
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat"); strings.Contains(string(b), ") Z ") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("process %d outlived the cancelled job", pid)
		}
	}
}
