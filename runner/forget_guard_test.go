package runner

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// A guarded forget previews first: a snapshot dated in the future (uploaded
// with --time by a compromised endpoint) or a removal above the threshold
// holds it with nothing deleted; an ordinary forget goes through. With
// restic 0.18.1 and 0.14.0.
func TestForgetGuard(t *testing.T) {
	for _, restic := range []string{testenv.Restic(t), testenv.Restic014(t)} {
		t.Run(filepath.Base(restic), func(t *testing.T) {
			r, _ := newRunner(t)
			r.Restic = restic
			ctx := testCtx(t)
			v, err := r.Version(ctx)
			if err != nil {
				t.Fatal(err)
			}
			r.ResticVersion = v
			repo := initRepo(t, r)
			src := t.TempDir()
			if err := os.WriteFile(filepath.Join(src, "f"), []byte("data"), 0o644); err != nil {
				t.Fatal(err)
			}
			count := func() int {
				var snaps []json.RawMessage
				_ = json.Unmarshal(resticDirect(t, repo, "snapshots", "--json"), &snaps)
				return len(snaps)
			}
			now := time.Now().UTC()
			for i := range 4 {
				at := now.Add(-time.Duration(4-i) * 24 * time.Hour).Format("2006-01-02 15:04:05")
				resticDirect(t, repo, "backup", "--host", "web-1", "--time", at, src)
			}
			guard := &ForgetGuard{MaxRemovePercent: 50, NotAfter: now.Add(2 * time.Minute)}

			// 3 of 4 would go: more than half.
			res := r.Run(ctx, Spec{Kind: KindForget, Repo: repo, Forget: ForgetArgs{KeepLast: 1, Hosts: []string{"web-1"}, Guard: guard}}, Hooks{})
			var held ForgetHeld
			if res.Status != StatusHeld || json.Unmarshal(res.Output, &held) != nil || held.Total != 4 || held.Remove != 3 || !strings.Contains(res.Error, "3 of 4") {
				t.Fatalf("forget of 3 of 4: %s %q %s", res.Status, res.Error, res.Output)
			}
			if n := count(); n != 4 {
				t.Fatalf("%d snapshots after a held forget, want 4", n)
			}
			// 1 of 4 may go.
			res = r.Run(ctx, Spec{Kind: KindForget, Repo: repo, Forget: ForgetArgs{KeepLast: 3, Hosts: []string{"web-1"}, Guard: guard}}, Hooks{})
			if res.Status != StatusSucceeded || count() != 3 {
				t.Fatalf("forget of 1 of 4: %s %q, %d left", res.Status, res.Error, count())
			}
			// A forged snapshot from 2099: keep-last would keep it and drop
			// a real one. Held, nothing deleted.
			resticDirect(t, repo, "backup", "--host", "web-1", "--time", "2099-01-01 00:00:00", src)
			res = r.Run(ctx, Spec{Kind: KindForget, Repo: repo, Forget: ForgetArgs{KeepLast: 3, Hosts: []string{"web-1"}, Guard: guard}}, Hooks{})
			if res.Status != StatusHeld || json.Unmarshal(res.Output, &held) != nil || len(held.Future) != 1 || !strings.Contains(res.Error, "dated after") {
				t.Fatalf("forget with a future snapshot: %s %q %s", res.Status, res.Error, res.Output)
			}
			if n := count(); n != 4 {
				t.Fatalf("%d snapshots after the held forget, want 4", n)
			}
			// Unguarded (an admin approved), it runs.
			res = r.Run(ctx, Spec{Kind: KindForget, Repo: repo, Forget: ForgetArgs{KeepLast: 3, Hosts: []string{"web-1"}}}, Hooks{})
			if res.Status != StatusSucceeded || count() != 3 {
				t.Fatalf("approved forget: %s %q, %d left", res.Status, res.Error, count())
			}
		})
	}
}
