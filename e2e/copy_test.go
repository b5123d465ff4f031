package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// initCopyDest makes the fleet's second repository (repo2 on the same
// rest-server, bound to the fleet's host) and initialises it with the
// first's chunker parameters through the agent.
func initCopyDest(t *testing.T, f *fleet) (url, id string) {
	t.Helper()
	url = strings.TrimSuffix(f.repoURL, "repo1/") + "repo2/"
	id = f.srv.createRepo("second-site", url, f.password+"-2", f.host.ID)
	job := f.srv.createJob(f.host.ID, map[string]any{"kind": "init", "repo_id": id, "args": map[string]any{"copy_chunker_params_from": f.repoID}})
	if j := f.srv.waitJob(job, 2*time.Minute); j.Status != wire.StatusSucceeded {
		t.Fatalf("init with the first repository's chunker parameters: %s: %s", j.Status, j.Error)
	}
	return url, id
}

// TestCopyEndToEnd: a real agent and restic. The second repository is
// initialised with the first's chunker parameters (sealed_from_repo), a
// policy copies after every backup, restic itself finds each snapshot in
// the second repository as a copy of the first's, and the console's copy
// lag of the pair falls to zero.
func TestCopyEndToEnd(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	dstURL, dst := initCopyDest(t, f)
	// restic's own view: both repositories chunk alike.
	cat := func(url, pw string) string {
		var cfg struct {
			ChunkerPolynomial string `json:"chunker_polynomial"`
		}
		out := restic(t, url, pw, "cat", "config")
		if err := json.Unmarshal(out, &cfg); err != nil || cfg.ChunkerPolynomial == "" {
			t.Fatalf("restic cat config: %s: %v", out, err)
		}
		return cfg.ChunkerPolynomial
	}
	if a, b := cat(f.repoURL, f.password), cat(dstURL, f.password+"-2"); a != b {
		t.Fatalf("chunker polynomials differ: %s and %s", a, b)
	}

	f.srv.do("PATCH", "/api/v1/hosts/"+f.host.ID, map[string]any{"labels": map[string]string{"site": "a"}}, nil, 200)
	f.srv.do("POST", "/api/v1/policies", map[string]any{"name": "two-sites", "selector": map[string]string{"site": "a"}, "repo_id": f.repoID,
		"copy_to_repo_id": dst, "copy_lag_max": 1}, nil, 201)
	src := makeTree(t, 50)
	for i := 0; i < 2; i++ {
		id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
		if j := f.srv.waitJob(id, 2*time.Minute); j.Status != wire.StatusSucceeded {
			t.Fatalf("backup: %s: %s", j.Status, j.Error)
		}
		var copied bool
		eventually(t, 2*time.Minute, "the policy's copy", func() error {
			for _, j := range f.srv.jobs() {
				if j.Kind == wire.JobCopy && j.ActorKind == "policy" && j.Status == wire.StatusSucceeded && j.CreatedAt.After(f.srv.job(id).EndedAt.Add(-time.Second)) {
					copied = true
					return nil
				}
			}
			return errString("no copy yet")
		})
		if !copied {
			t.Fatal("no copy")
		}
	}
	srcSnaps := resticSnapshots(t, f.repoURL, f.password)
	var dstSnaps []struct {
		ID       string `json:"id"`
		Original string `json:"original"`
	}
	if err := json.Unmarshal(restic(t, dstURL, f.password+"-2", "snapshots", "--json"), &dstSnaps); err != nil {
		t.Fatal(err)
	}
	originals := map[string]bool{}
	for _, s := range dstSnaps {
		originals[s.Original] = true
	}
	if len(srcSnaps) != 2 || len(dstSnaps) != 2 {
		t.Fatalf("%d snapshots in the source, %d in the copy, want 2 and 2", len(srcSnaps), len(dstSnaps))
	}
	for _, s := range srcSnaps {
		if !originals[s.ID] {
			t.Errorf("snapshot %s has no copy in the second repository", s.ID[:8])
		}
	}
	// The console's view, from the health jobs that follow a copy.
	eventually(t, 2*time.Minute, "copy lag 0", func() error {
		var r struct {
			Health *struct {
				CopyLag []copyLagView `json:"copy_lag"`
			} `json:"health"`
		}
		f.srv.do("GET", "/api/v1/repos/"+f.repoID, nil, &r, 200)
		if r.Health == nil || len(r.Health.CopyLag) != 1 || r.Health.CopyLag[0].ToRepoID != dst || r.Health.CopyLag[0].MissingSnapshots != 0 {
			b, _ := json.Marshal(r.Health)
			return errString("health " + string(b))
		}
		return nil
	})
}

// TestCopyLagFollowsTheCopyHost: a real copy host (the agent a policy's
// copies run on) is stopped, snapshots of it keep reaching the source
// repository (restic run by hand on the machine, as an operator would
// while the agent is down), and a second host bound to the source alone
// refreshes its health: the console's copy lag counts them, with the
// oldest missing one's time, and the copy_lag alert fires. When the copy
// host returns, the policy's catch-up copy schedule fires its missed
// window at once, the copies reach the destination (restic itself finds
// them there), the lag falls to zero and the alert resolves.
func TestCopyLagFollowsTheCopyHost(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", "--health-delay=1s", "--alert-interval=1s")
	f.agent.start(t)
	reader := f.srv.createHost("reader-1")
	readerAgent := enrollAgent(t, f.srv, reader.EnrollToken, testenv.Restic(t))
	readerAgent.start(t)
	f.srv.bindHosts(f.repoID, reader.ID)
	f.srv.waitOnline(f.host.ID, true)
	f.srv.waitOnline(reader.ID, true)
	f.initRepo(t)
	dstURL, dst := initCopyDest(t, f)

	// The copy host's policy: a copy after every backup, a catch-up copy
	// schedule (nightly in real life; every 20 s here), at most one
	// snapshot behind.
	f.srv.do("PATCH", "/api/v1/hosts/"+f.host.ID, map[string]any{"labels": map[string]string{"site": "a"}}, nil, 200)
	f.srv.do("POST", "/api/v1/policies", map[string]any{"name": "two-sites", "selector": map[string]string{"site": "a"}, "repo_id": f.repoID,
		"copy_to_repo_id": dst, "copy_lag_max": 1, "rpo": "26h",
		"schedules": []map[string]any{{"name": "copy catch-up", "kind": "copy", "cron": "@every 20s", "enabled": true}}}, nil, 201)
	src := makeTree(t, 20)
	first := f.run(t, "backup", map[string]any{"paths": []string{src}})
	// lagIs waits until the source lists n snapshots and its lag
	// against the destination is as ok wants (a lag measured before the
	// source's list caught up says nothing).
	lagIs := func(what string, n int, ok func(copyLagView) bool) copyLagView {
		t.Helper()
		var found copyLagView
		eventually(t, 90*time.Second, what, func() error {
			var r struct {
				Health *struct {
					SnapshotCount int           `json:"snapshot_count"`
					CopyLag       []copyLagView `json:"copy_lag"`
				} `json:"health"`
			}
			f.srv.do("GET", "/api/v1/repos/"+f.repoID, nil, &r, 200)
			if r.Health != nil && r.Health.SnapshotCount == n && len(r.Health.CopyLag) == 1 && r.Health.CopyLag[0].ToRepoID == dst && ok(r.Health.CopyLag[0]) {
				found = r.Health.CopyLag[0]
				return nil
			}
			b, _ := json.Marshal(r.Health)
			return errString("health " + string(b))
		})
		return found
	}
	lagIs("copy lag 0 after the first backup's copy", 1, func(l copyLagView) bool { return l.MissingSnapshots == 0 })
	// Let the health refreshes the copy started end: one still running
	// when the agent stops is cancelled, and one that listed the
	// destination before the copy saved its snapshot is followed by
	// another (its list is stale), which must not be the one cancelled.
	eventually(t, time.Minute, "no job in flight", func() error {
		for _, j := range f.srv.jobs() {
			if !harness.Terminal(j.Status) {
				return fmt.Errorf("%s %s is %s", j.Kind, j.ID, j.Status)
			}
		}
		return nil
	})
	lagIs("copy lag still 0", 1, func(l copyLagView) bool { return l.MissingSnapshots == 0 })

	// The copy host stops; two snapshots of it arrive without it.
	stop(t, f.agent.Proc)
	f.srv.waitOnline(f.host.ID, false)
	var hv struct {
		Hostname string `json:"hostname"`
	}
	f.srv.do("GET", "/api/v1/hosts/"+f.host.ID, nil, &hv, 200)
	hostname := hv.Hostname
	if hostname == "" {
		t.Fatal("the host reported no host name")
	}
	for i := 0; i < 2; i++ {
		if err := os.WriteFile(filepath.Join(src, fmt.Sprintf("by-hand-%d.txt", i)), []byte(fmt.Sprintf("while the agent was down %d\n", i)), 0o644); err != nil {
			t.Fatal(err)
		}
		restic(t, f.repoURL, f.password, "backup", "--host", hostname, src)
	}
	var bySrc []snap
	if err := json.Unmarshal(restic(t, f.repoURL, f.password, "snapshots", "--json"), &bySrc); err != nil || len(bySrc) != 3 {
		t.Fatalf("source snapshots %d: %v", len(bySrc), err)
	}
	var oldestNew time.Time
	for _, s := range bySrc {
		if s.ID != first.SnapshotID && (oldestNew.IsZero() || s.Time.Before(oldestNew)) {
			oldestNew = s.Time
		}
	}

	// The reader refreshes the source's health: the lag rises.
	if j := f.srv.waitJob(f.srv.createJob(reader.ID, map[string]any{"kind": "health", "repo_id": f.repoID}), 2*time.Minute); j.Status != wire.StatusSucceeded {
		t.Fatalf("health on the reader: %s: %s", j.Status, j.Error)
	}
	l := lagIs("copy lag 2 while the copy host is down", 3, func(l copyLagView) bool { return l.MissingSnapshots == 2 })
	if l.OldestMissingAt == nil || l.OldestMissingAt.Sub(oldestNew).Abs() > time.Second {
		t.Errorf("oldest missing %v, want %v (the first snapshot made while the host was down)", l.OldestMissingAt, oldestNew)
	}
	f.srv.waitAlert("copy_lag", "firing")
	if rows := f.srv.complianceCSV(); len(rows) != 1 || rows[0]["copy_lag"] != "2" {
		t.Errorf("compliance rows while behind: %v", rows)
	}

	// The copy host returns: its copy schedule's missed window fires.
	back := time.Now()
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	// (A copy the schedule fired just before the stop, still queued for
	// the host, may run first: count what every copy since copied.)
	eventually(t, 90*time.Second, "the catch-up copy", func() error {
		copied, scheduled := map[string]bool{}, false
		for _, j := range f.srv.jobs() {
			if j.Kind != wire.JobCopy || j.Status != wire.StatusSucceeded || !j.EndedAt.After(back) {
				continue
			}
			var out wire.CopyOutput
			if err := json.Unmarshal(j.Output, &out); err != nil {
				return harness.Permanent(fmt.Errorf("copy output %s: %w", j.Output, err))
			}
			for _, id := range out.Copied {
				copied[id] = true
			}
			scheduled = scheduled || j.ScheduleID != ""
		}
		if len(copied) != 2 || !scheduled {
			return fmt.Errorf("copied since the host returned: %v (by a schedule: %v)", copied, scheduled)
		}
		return nil
	})
	lagIs("copy lag 0 after the catch-up", 3, func(l copyLagView) bool { return l.MissingSnapshots == 0 && l.OldestMissingAt == nil })
	f.srv.waitAlert("copy_lag", "resolved")
	if rows := f.srv.complianceCSV(); len(rows) != 1 || rows[0]["copy_lag"] != "0" {
		t.Errorf("compliance rows after the catch-up: %v", rows)
	}

	// restic's own view: every source snapshot has its copy.
	var byDst []snap
	if err := json.Unmarshal(restic(t, dstURL, f.password+"-2", "snapshots", "--json"), &byDst); err != nil {
		t.Fatal(err)
	}
	originals := map[string]bool{}
	for _, s := range byDst {
		originals[s.Original] = true
	}
	for _, s := range bySrc {
		if !originals[s.ID] {
			t.Errorf("source snapshot %.8s has no copy in the destination", s.ID)
		}
	}
	if len(byDst) != len(bySrc) {
		t.Errorf("%d snapshots in the destination, %d in the source", len(byDst), len(bySrc))
	}
}
