package runner

import (
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

func TestRotateKeyRestic018(t *testing.T) {
	t.Parallel()
	testRotateKey(t, versionedRunner(t, testenv.Restic(t), "0.18.1"))
}

func TestRotateKeyRestic014(t *testing.T) {
	t.Parallel()
	testRotateKey(t, versionedRunner(t, testenv.Restic014(t), "0.14.0"))
}

// testRotateKey: after a rotation the new password opens the repository
// and its snapshots, the old one is refused by restic itself, and a run
// again (a result lost) still reports success.
func testRotateKey(t *testing.T, r *Runner) {
	old := initRepo(t, r)
	data := filepath.Join(t.TempDir(), "data")
	genTree(t, data, 5, 1, 1<<10)
	snap := runOK(t, r, Spec{Kind: KindBackup, Repo: old, Backup: BackupArgs{Paths: []string{data}}}).SnapshotID
	const newPw = "a new, longer password"
	rotate := func() (Result, wire.RotateKeyOutput) {
		t.Helper()
		res := r.Run(testCtx(t), Spec{Kind: KindRotateKey, Repo: old, RotateKey: RotateKeyArgs{NewPassword: newPw}}, Hooks{})
		var out wire.RotateKeyOutput
		if res.Output != nil {
			if err := json.Unmarshal(res.Output, &out); err != nil {
				t.Fatal(err)
			}
		}
		if strings.Contains(res.Error+res.StderrTail, newPw) || strings.Contains(res.Error+res.StderrTail, old.Password) {
			t.Errorf("a password in the result: %+v", res)
		}
		return res, out
	}
	res, out := rotate()
	if res.Status != StatusSucceeded || !out.NewPasswordWorks || out.OldKeyID == "" || out.KeyID == "" || out.KeyID == out.OldKeyID || out.Keys != 1 || out.AlreadyRotated {
		t.Fatalf("rotation: %+v %+v", res, out)
	}
	rotated := Repo{URL: old.URL, Password: newPw}
	if snaps := snapshotsOf(t, r.Restic, rotated); len(snaps) != 1 || !strings.HasPrefix(snaps[0].ID, snap) {
		t.Fatalf("snapshots with the new password: %+v, want %s", snaps, snap)
	}
	// restic itself refuses the old password.
	cmd := exec.Command(r.Restic, "-r", old.URL, "--no-cache", "--password-command", "echo "+old.Password, "snapshots")
	if b, err := cmd.CombinedOutput(); err == nil || !strings.Contains(string(b), "wrong password") {
		t.Fatalf("the old password after the rotation: %v %s", err, b)
	}
	// Run again with the old password, as a console that lost the result
	// would: the new password opens the repository, so it is done.
	res, out = rotate()
	if res.Status != StatusSucceeded || !out.AlreadyRotated || !out.NewPasswordWorks || out.KeyID == "" {
		t.Fatalf("rotation again: %+v %+v", res, out)
	}
	// Same password, and a password restic would mangle: refused before restic.
	for _, pw := range []string{newPw, " padded "} {
		res := r.Run(testCtx(t), Spec{Kind: KindRotateKey, Repo: rotated, RotateKey: RotateKeyArgs{NewPassword: pw}}, Hooks{})
		if res.Status != StatusFailed || !strings.Contains(res.Error, "password") {
			t.Errorf("new password %q: %+v", pw, res)
		}
	}
}
