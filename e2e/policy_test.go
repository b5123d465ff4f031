package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// Zero touch, with the real processes: after an admin made a policy (a
// repository template and a backup schedule for role=web) and an
// enrolment key carrying role=web, a machine enrols with the key and —
// nobody touching the console again — its host appears with the label,
// its own repository is made and initialised, and its first scheduled
// backup runs into it with real restic. Relabelling moves the host to
// another policy (the old schedule gone, the new one applied by the
// agent); deleting that policy takes its schedule away.
func TestZeroTouchPolicyEnrolment(t *testing.T) {
	s := newServer(t)
	_, agentBin := binaries(t)
	root := t.TempDir()
	rs := restServer(t, root)
	src := makeTree(t, 12)

	var web struct{ ID string }
	s.do("POST", "/api/v1/policies", map[string]any{"name": "web", "selector": map[string]string{"role": "web"},
		"repo_template": map[string]any{"url": "rest:http://" + rs + "/{host}/", "init": true},
		"schedules":     []map[string]any{{"name": "every minute", "kind": "backup", "cron": "* * * * *", "jitter_s": 0, "enabled": true, "paths": []string{src}}},
	}, &web, 201)
	k := s.createEnrollKey(map[string]any{"name": "web machines", "labels": map[string]string{"role": "web"}, "max_uses": 5, "expires_in": "1h"})

	// The machine: enrol with the key, run the agent. Nothing else.
	config := filepath.Join(t.TempDir(), "agent.yaml")
	if out, err := exec.Command(agentBin, "enroll", "--server", s.URL(""), "--key", k.Key, "--name", "web-zero",
		"--ca-fingerprint", s.CAFingerprint, "--config", config, "--restic", testenv.Restic(t)).CombinedOutput(); err != nil {
		t.Fatalf("enroll --key: %v\n%s", err, out)
	}
	id := configuredHost(t, config)
	a := &agentProc{&harness.Agent{Bin: agentBin, Config: config, Restic: testenv.Restic(t)}}
	a.start(t)
	s.waitOnline(id, true)
	if _, labels := s.hostLabels(id); labels["role"] != "web" {
		t.Fatalf("labels %v", labels)
	}
	var backup harness.Job
	eventually(t, 3*time.Minute, "the first scheduled backup into the host's own repository", func() error {
		for _, j := range scheduledOnly(s.hostJobs(id)) {
			if j.Kind == "backup" && j.Status == "succeeded" {
				backup = j.Job
				return nil
			}
		}
		return errorf("none yet")
	})
	var repo struct {
		ID, URL string
		Hosts   []string
	}
	s.do("GET", "/api/v1/repos/"+backup.RepoID, nil, &repo, 200)
	if repo.URL != "rest:http://"+rs+"/web-zero/" || len(repo.Hosts) != 1 || repo.Hosts[0] != id {
		t.Errorf("the host's repository: %+v", repo)
	}
	if _, err := os.Stat(filepath.Join(root, "web-zero", "config")); err != nil {
		t.Errorf("the repository was not initialised on the rest-server: %v", err)
	}
	var inits []harness.Job
	for _, j := range s.hostJobs(id) {
		if j.Kind == "init" {
			inits = append(inits, j.Job)
		}
	}
	if len(inits) != 1 || inits[0].Status != "succeeded" {
		t.Errorf("init jobs: %+v", inits)
	}

	// Relabelled role=db: the web schedule goes, the db policy's comes.
	var db struct{ ID string }
	s.do("POST", "/api/v1/policies", map[string]any{"name": "db", "selector": map[string]string{"role": "db"}, "repo_id": backup.RepoID,
		"schedules": []map[string]any{{"name": "nightly check", "kind": "check", "cron": "0 4 * * *", "enabled": true}}}, &db, 201)
	s.do("PATCH", "/api/v1/hosts/"+id, map[string]any{"labels": map[string]string{"role": "db"}}, nil, 200)
	r := s.schedules(id)
	if len(r.Schedules) != 1 || r.Schedules[0].Kind != "check" || !strings.HasPrefix(r.Schedules[0].ID, "psch-") {
		t.Fatalf("after relabelling: %+v", r.Schedules)
	}
	s.waitApplied(id, r.Version)
	// Deleting the db policy takes its schedule away from the host.
	s.do("DELETE", "/api/v1/policies/"+db.ID, nil, nil, 200)
	r = s.schedules(id)
	if len(r.Schedules) != 0 {
		t.Fatalf("after deleting the policy: %+v", r.Schedules)
	}
	s.waitApplied(id, r.Version)
}
