package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
)

// TestChaosRestore: the console is lost and restored from backup-store
// (fault 8).
func TestChaosRestore(t *testing.T) {
	t.Parallel()
	f := newChaosFleet(t, 2)
	f.faultRestoreStore(chaosSize())
}

// 8. The console's store is backed up online (backup-store), the server
// dies, the backup is restored into an empty data directory and a server
// started on it: history is there, a backup that ran across the loss ends,
// agents reconnect and new jobs run.
func (f *chaosFleet) faultRestoreStore(sz chaosScale) {
	t := f.t
	ft := f.fault(8, "restore the console from backup-store into an empty data dir")
	defer ft.finish()
	for _, a := range f.agents {
		f.srv.waitJob(ft.backup(a, "succeeded"), 2*time.Minute)
	}
	f.gate.close()
	across := ft.backup(f.agents[len(f.agents)-1], "succeeded")
	f.waitRunning(across)
	history := map[string]harness.Job{}
	for _, j := range f.srv.jobs() {
		history[j.ID] = j
	}

	var tok struct {
		Token string `json:"token"`
	}
	f.srv.do("POST", "/api/v1/tokens", map[string]string{"name": "chaos-store"}, &tok, 201)
	serverBin, _ := binaries(t)
	dir := t.TempDir()
	bak := filepath.Join(dir, "store.bak")
	cmd := exec.Command(serverBin, "backup-store", bak, "--server", f.srv.URL(""), "--ca-fingerprint", f.srv.CAFingerprint)
	cmd.Env = append(os.Environ(), "RM_TOKEN="+tok.Token)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("backup-store: %v\n%s", err, out)
	}

	// The disaster: the server and its data are lost. The agents stay away
	// until the restored console is up (their reconnection time is chance).
	conns := map[*chaosAgent]int{}
	for _, a := range f.agents {
		a.link.block()
		conns[a] = a.link.connections()
	}
	old := f.srv
	old.Proc.Kill()
	data := filepath.Join(dir, "restored")
	if out, err := exec.Command(serverBin, "restore-store", bak, "--data", data,
		"--master-key", filepath.Join(old.Data, "store", "master.key"), "--tls", filepath.Join(old.Data, "tls")).CombinedOutput(); err != nil {
		t.Fatalf("restore-store: %v\n%s", err, out)
	}
	f.srv = startServer(t, data, old.HTTPAddr, old.MQTTAddr, "--health-delay=10m")
	if f.srv.CAFingerprint != old.CAFingerprint {
		ft.violation("restored console has CA %s, agents pin %s", f.srv.CAFingerprint, old.CAFingerprint)
	}
	// Jobs made on the restored console before the agents are back: its
	// store (as backed up) still says they are online.
	for range sz.jobs {
		for _, a := range f.agents {
			ft.backup(a, "succeeded")
		}
	}
	for _, a := range f.agents {
		a.link.unblock()
	}
	f.gate.open()
	// And jobs once they are back.
	for _, a := range f.agents {
		eventually(t, time.Minute, a.name+" reconnected", func() error {
			if a.link.connections() == conns[a] {
				return errorf("no connection yet")
			}
			return nil
		})
	}
	for _, a := range f.agents {
		ft.backup(a, "succeeded")
	}
	ft.check(2 * time.Minute)

	// The history from before the loss is all there; what had ended is unchanged.
	now := map[string]harness.Job{}
	for _, j := range f.srv.jobs() {
		now[j.ID] = j
	}
	for id, h := range history {
		j, ok := now[id]
		switch {
		case !ok:
			ft.violation("job %s (%s) from before the restore is gone", id, h.Kind)
		case harness.Terminal(h.Status) && (j.Status != h.Status || j.SnapshotID != h.SnapshotID):
			ft.violation("job %s was %s/%s before the restore, %s/%s after", id, h.Status, h.SnapshotID, j.Status, j.SnapshotID)
		}
	}
	ft.note("%d jobs of history restored; job %s, running while the store was lost, ended %s after the restore", len(history), across, now[across].Status)
}
