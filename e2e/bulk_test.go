package e2e

import (
	"slices"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// A bulk backup over a label selector, with real agents and restic: of
// three enrolled hosts all bound to the repository, the two labelled
// role=web each get exactly one backup job, which succeeds and leaves its
// snapshot in the repository; the role=db host gets no job at all.
func TestBulkBackupBySelector(t *testing.T) {
	s := newServer(t)
	restic := testenv.Restic(t)
	root := t.TempDir()
	repoURL := "rest:http://" + restServer(t, root) + "/bulk/"
	const password = "bulk-repo-secret"

	labels := map[string]string{"web-1": "web", "web-2": "web", "db-1": "db"}
	ids := map[string]string{} // name → host ID
	var all []string
	for _, name := range []string{"web-1", "web-2", "db-1"} {
		h := s.createHost(name)
		a := enrollAgent(t, s, h.EnrollToken, restic)
		a.start(t)
		s.do("PATCH", "/api/v1/hosts/"+h.ID, map[string]any{"labels": map[string]string{"role": labels[name]}}, nil, 200)
		ids[name] = h.ID
		all = append(all, h.ID)
	}
	for _, id := range all {
		s.waitOnline(id, true)
	}
	repoID := s.createRepo("main", repoURL, password, all...)
	if j := s.waitJob(s.createJob(ids["db-1"], map[string]any{"kind": "init", "repo_id": repoID}), 2*time.Minute); j.Status != "succeeded" {
		t.Fatalf("init: %s: %s %s", j.Status, j.Error, j.StderrTail)
	}

	src := makeTree(t, 50)
	var res struct {
		JobIDs  []string `json:"job_ids"`
		Refused []struct {
			HostID string `json:"host_id"`
			Error  string `json:"error"`
		} `json:"refused"`
	}
	s.do("POST", "/api/v1/jobs/bulk", map[string]any{"selector": map[string]string{"role": "web"}, "kind": "backup", "repo_id": repoID,
		"args": map[string]any{"paths": []string{src}, "tags": []string{"bulk"}}}, &res, 201)
	if len(res.JobIDs) != 2 || len(res.Refused) != 0 {
		t.Fatalf("bulk backup role=web: %+v, want two jobs and no refusal", res)
	}
	var ran, snaps []string
	for _, id := range res.JobIDs {
		j := s.waitJob(id, 3*time.Minute)
		if j.Status != "succeeded" || j.Kind != "backup" || j.ActorKind != "user" || j.Actor != "admin" || j.SnapshotID == "" {
			t.Errorf("job %s on %s: %s %s/%s snapshot %q: %s %s", id, j.HostID, j.Kind, j.ActorKind, j.Actor, j.SnapshotID, j.Status, j.Error+j.StderrTail)
		}
		ran = append(ran, j.HostID)
		snaps = append(snaps, j.SnapshotID)
	}
	slices.Sort(ran)
	want := []string{ids["web-1"], ids["web-2"]}
	slices.Sort(want)
	if !slices.Equal(ran, want) {
		t.Errorf("backups ran on %v, want one on each web host %v", ran, want)
	}

	// Exactly one backup per web host, none on the database host.
	perHost := map[string]int{}
	for _, j := range s.jobs() {
		if j.Kind == "backup" {
			perHost[j.HostID]++
		}
		if j.HostID == ids["db-1"] && j.Kind != "init" {
			t.Errorf("the db host got a %s job (%s)", j.Kind, j.ID)
		}
	}
	if perHost[ids["web-1"]] != 1 || perHost[ids["web-2"]] != 1 || len(perHost) != 2 {
		t.Errorf("backup jobs per host: %v", perHost)
	}

	// restic itself sees the two snapshots the jobs report.
	var got []string
	for _, sn := range resticSnapshots(t, repoURL, password) {
		if slices.Contains(sn.Tags, "bulk") {
			got = append(got, sn.ID)
		}
	}
	slices.Sort(got)
	slices.Sort(snaps)
	if !slices.Equal(got, snaps) {
		t.Errorf("repository has tagged snapshots %v, the jobs report %v", got, snaps)
	}
}
