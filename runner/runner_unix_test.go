//go:build unix

package runner

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestKillAfterGrace: a process that ignores SIGINT is killed once Grace has
// passed. restic always honours the first SIGINT, so the test binary stands
// in for it (see TestMain).
func TestKillAfterGrace(t *testing.T) {
	t.Parallel()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	r, _ := newRunner(t)
	r.Restic = self
	r.Grace = 300 * time.Millisecond
	ctx, cancel := context.WithCancel(testCtx(t))
	defer cancel()
	var cancelledAt time.Time
	spec := Spec{
		Kind:   KindBackup,
		Repo:   Repo{URL: "/unused", Password: "pw12345", Env: map[string]string{"RUNNER_TEST_HELPER": "ignore-sigint"}},
		Backup: BackupArgs{Paths: []string{"/unused"}},
	}
	res := r.Run(ctx, spec, Hooks{OnProgress: func(Progress) {
		cancelledAt = time.Now()
		cancel()
	}})
	if cancelledAt.IsZero() {
		t.Fatalf("no progress: %+v", res)
	}
	if res.Status != StatusCancelled || res.ExitCode != 128+9 {
		t.Fatalf("%+v", res)
	}
	if d := res.EndedAt.Sub(cancelledAt); d < r.Grace || d > 10*time.Second {
		t.Errorf("killed %v after the cancel, Grace %v", d, r.Grace)
	}
	if l := leftovers(t, r.TempDir); len(l) != 0 {
		t.Errorf("left in TempDir: %v", l)
	}
}

func TestTempDirMustBePrivate(t *testing.T) {
	t.Parallel()
	r, _ := newRunner(t)
	r.TempDir = filepath.Join(t.TempDir(), "open")
	if err := os.Mkdir(r.TempDir, 0o755); err != nil {
		t.Fatal(err)
	}
	res := r.Run(testCtx(t), Spec{Kind: KindInit, Repo: Repo{URL: filepath.Join(t.TempDir(), "repo"), Password: "pw12345"}}, Hooks{})
	if res.Status != StatusFailed || res.ExitCode != -1 || !strings.Contains(res.Error, "must not be accessible to group or others") {
		t.Fatalf("%+v", res)
	}
	if l := leftovers(t, r.TempDir); len(l) != 0 {
		t.Errorf("left in TempDir: %v", l)
	}
}
