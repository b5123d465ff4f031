package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

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
	dstURL := strings.TrimSuffix(f.repoURL, "repo1/") + "repo2/"
	dst := f.srv.createRepo("second-site", dstURL, f.password+"-2", f.host.ID)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "init", "repo_id": dst, "args": map[string]any{"copy_chunker_params_from": f.repoID}})
	if j := f.srv.waitJob(id, 2*time.Minute); j.Status != wire.StatusSucceeded {
		t.Fatalf("init with the first repository's chunker parameters: %s: %s", j.Status, j.Error)
	}
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
		id = f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
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
