package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// drill runs a drill job and returns it with its output.
func (f *fleet) drill(t *testing.T, hostID string, args map[string]any) (jobStatus string, errText string, out wire.DrillOutput) {
	t.Helper()
	id := f.srv.createJob(hostID, map[string]any{"kind": "drill", "repo_id": f.repoID, "args": args})
	j := f.srv.waitJob(id, 3*time.Minute)
	switch j.Status {
	case wire.StatusSucceeded, wire.StatusPartial, wire.StatusFailed:
		// The proven host's last drill is recorded after the job's end is
		// stored, in the background (fleet.OnJobEnd): read at once, CI
		// once found the drill before.
		f.srv.waitDrill(hostID, id)
	}
	if len(j.Output) > 0 {
		if err := json.Unmarshal(j.Output, &out); err != nil {
			t.Fatalf("drill output %s: %v", j.Output, err)
		}
	}
	return j.Status, j.Error, out
}

// scratchLeft lists what a drill left in an agent's scratch area.
func scratchLeft(t *testing.T, a *agentProc) []string {
	t.Helper()
	entries, err := os.ReadDir(filepath.Join(filepath.Dir(a.Config), "state", "drill"))
	if err != nil && !os.IsNotExist(err) {
		t.Fatal(err)
	}
	var names []string
	for _, e := range entries {
		names = append(names, e.Name())
	}
	return names
}

// TestDrill drills a real backup through a real agent and restic: a
// good one, one whose source file changed since, and one after a pack
// file of the repository was damaged.
func TestDrill(t *testing.T) {
	t.Parallel() // mostly waiting: for the scheduled drill, for the databases
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 300)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	if j := f.srv.waitJob(id, 3*time.Minute); j.Status != wire.StatusSucceeded {
		t.Fatalf("backup: %s: %s", j.Status, j.Error)
	}

	// A good drill: the sample restores, unchanged live files compare equal.
	status, errText, out := f.drill(t, f.host.ID, map[string]any{"sample_files": 40})
	if status != wire.StatusSucceeded {
		t.Fatalf("drill: %s: %s", status, errText)
	}
	t.Logf("drill: %d files, %d bytes checked (%d against the live file), %.1f MiB/s, full restore estimated at %.1f s for %d bytes",
		out.FilesChecked, out.BytesChecked, out.LiveCompared, out.RestoreBytesPerS/(1<<20), out.EstimatedFullRestoreS, out.SnapshotBytes)
	if out.FilesChecked != 40 || len(out.Sample) != 40 || out.BytesChecked <= 0 || out.LiveCompared != 40 || len(out.Mismatches) != 0 {
		t.Errorf("drill output %+v", out)
	}
	if out.SnapshotFiles != 301 || out.RestoreBytesPerS <= 0 || out.EstimatedFullRestoreS <= 0 || out.SnapshotID == "" {
		t.Errorf("drill figures %+v", out)
	}
	// Weighted: the one large file is in the sample (it is 2 MiB of
	// about 2.1 MiB; a uniform sample of 40 of 301 would miss it 87% of
	// the time).
	if !contains(out.Sample, filepath.Join(src, "big.bin")) {
		t.Errorf("the sample %v lacks the large file", out.Sample)
	}
	if left := scratchLeft(t, f.agent); len(left) != 0 {
		t.Errorf("scratch data left: %v", left)
	}
	if h := f.srv.host(f.host.ID); h.LastDrill == nil || h.LastDrill.Status != wire.StatusSucceeded || h.ProvenRestorableAt == nil {
		t.Errorf("host after a good drill: last_drill %+v, proven_restorable_at %v", h.LastDrill, h.ProvenRestorableAt)
	}

	// On a dedicated drill host bound to the repository: it restores
	// there, compares no live files (they are not its), proves the first
	// host and leaves no scratch data on either.
	second := f.srv.createHost("drill-host")
	drillAgent := enrollAgent(t, f.srv, second.EnrollToken, testenv.Restic(t))
	drillAgent.start(t)
	f.srv.waitOnline(second.ID, true)
	f.srv.bindHosts(f.repoID, f.host.ID, second.ID)
	status, errText, out = f.drill(t, f.host.ID, map[string]any{"sample_files": 10, "target_host_id": second.ID})
	if status != wire.StatusSucceeded || out.TargetHostID != second.ID || out.LiveCompared != 0 || out.FilesChecked != 10 {
		t.Fatalf("drill on a second host: %s: %s %+v", status, errText, out)
	}
	if h := f.srv.host(f.host.ID); h.LastDrill == nil || h.LastDrill.RanOn != second.ID {
		t.Errorf("the first host's last drill %+v, want it run on %s", h.LastDrill, second.ID)
	}
	if left := append(scratchLeft(t, f.agent), scratchLeft(t, drillAgent)...); len(left) != 0 {
		t.Errorf("scratch data left: %v", left)
	}

	// A scheduled drill fires and proves the host again.
	f.srv.do("PUT", "/api/v1/hosts/"+f.host.ID+"/schedules", []map[string]any{
		{"name": "drill", "kind": "drill", "cron": "@every 1m", "enabled": true, "repo_id": f.repoID, "sample_files": 5},
	}, nil, 200)
	eventually(t, 3*time.Minute, "a scheduled drill", func() error {
		for _, j := range f.srv.jobs() {
			if j.Kind == "drill" && j.ActorKind == "schedule" && j.Status == wire.StatusSucceeded {
				return nil
			}
		}
		return fmt.Errorf("none yet")
	})
	f.srv.do("PUT", "/api/v1/hosts/"+f.host.ID+"/schedules", []map[string]any{}, nil, 200)

	// A file changed since the snapshot is no mismatch: it is not compared.
	changed := filepath.Join(src, "d03", "f0003.txt")
	if err := os.WriteFile(changed, []byte("changed after the backup\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	status, errText, out = f.drill(t, f.host.ID, map[string]any{"sample_files": 5, "paths": []string{changed}})
	if status != wire.StatusSucceeded || len(out.Mismatches) != 0 || !contains(out.Sample, changed) {
		t.Fatalf("drill after a source change: %s: %s %+v", status, errText, out)
	}

	// A damaged pack file: the drill of the whole snapshot fails and says
	// which files did not come back (or restic's read error).
	packs, _ := filepath.Glob(filepath.Join(f.repoDir, "data", "*", "*"))
	if len(packs) == 0 {
		t.Fatal("no pack files")
	}
	sort.Slice(packs, func(i, j int) bool { return fileSize(packs[i]) > fileSize(packs[j]) })
	corrupt(t, packs[0]) // the largest: big.bin's data, never in restic's cache
	status, errText, out = f.drill(t, f.host.ID, map[string]any{"sample_files": 1000})
	if status != wire.StatusFailed || !strings.Contains(errText, "big.bin") && !strings.Contains(errText, "restic restore") {
		t.Fatalf("drill of a damaged repository: %s: %s %+v", status, errText, out.Mismatches)
	}
	t.Logf("damaged repository: %s", errText)
	if left := scratchLeft(t, f.agent); len(left) != 0 {
		t.Errorf("scratch data left after a failed drill: %v", left)
	}
}

func fileSize(p string) int64 {
	fi, err := os.Stat(p)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// corrupt flips bytes in the middle of a file (rest-server stores packs
// read-only).
func corrupt(t *testing.T, p string) {
	t.Helper()
	_ = os.Chmod(p, 0o600)
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	for i := len(b) / 3; i < len(b)/3+64 && i < len(b); i++ {
		b[i] ^= 0xff
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}
