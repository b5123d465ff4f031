package e2e

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// fakeAgentWithHooks enrols a host and connects a raw MQTT client as its
// agent, publishing a status that reports hooks and sources.
func fakeAgentWithHooks(t *testing.T, s *server, name string, hooks, sources, restore []string) (string, *mqttClient) {
	t.Helper()
	cred, id := s.credential(name)
	c, _, err := dialMQTT(t, s, id, id, cred.Password, nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := wire.Encode(&wire.Status{Online: true, OS: "linux", Arch: "amd64", AgentVersion: "test", StartedAt: time.Now().UTC(),
		Hooks: hooks, Sources: sources, RestoreSources: restore})
	if err != nil {
		t.Fatal(err)
	}
	if code := c.publish(t, wire.StatusTopic(id), st, true); code != 0 {
		t.Fatalf("status: reason %#x", code)
	}
	s.waitOnline(id, true)
	return id, c
}

// The console shows what the agents report and refuses, before anything
// is sent, the names a host lacks: jobs, bulk runs per host, a host's own
// schedules, restores into a source; a policy may name anything and says
// which hosts lack it; a result's hook runs are kept with the job.
func TestHooksAndSourcesThroughTheAPI(t *testing.T) {
	s := newServer(t)
	web, agent := fakeAgentWithHooks(t, s, "web-1", []string{"freeze", "notify"}, []string{"pg"}, []string{"pg"})
	db, _ := fakeAgentWithHooks(t, s, "db-1", nil, nil, nil)
	s.do("PATCH", "/api/v1/hosts/"+web, map[string]any{"labels": map[string]string{"role": "web"}}, nil, 200)
	s.do("PATCH", "/api/v1/hosts/"+db, map[string]any{"labels": map[string]string{"role": "web"}}, nil, 200)
	repoID := s.createRepo("main", "rest:http://127.0.0.1:9/main/", "pw", web, db)

	var host map[string]any
	s.do("GET", "/api/v1/hosts/"+web, nil, &host, 200)
	if names(host["hooks"]) != "freeze,notify" || names(host["sources"]) != "pg" || names(host["restore_sources"]) != "pg" {
		t.Fatalf("host view: hooks %v sources %v restore_sources %v", host["hooks"], host["sources"], host["restore_sources"])
	}

	var refusal map[string]string
	s.do("POST", "/api/v1/hosts/"+web+"/jobs", map[string]any{"kind": "backup", "repo_id": repoID,
		"args": map[string]any{"paths": []string{"/etc"}, "hooks": []string{"pg-freeze"}}}, &refusal, 400)
	if !strings.Contains(refusal["error"], `host web-1 has no hook "pg-freeze" (it reports: freeze, notify)`) {
		t.Errorf("refusal: %q", refusal["error"])
	}
	if n := len(s.jobs()); n != 0 {
		t.Fatalf("%d jobs after a refusal", n)
	}
	jobID := s.createJob(web, map[string]any{"kind": "backup", "repo_id": repoID,
		"args": map[string]any{"sources": []string{"pg"}, "hooks": []string{"freeze"}, "limit_upload_kib": 512}})
	var made struct {
		Args wire.BackupArgs `json:"args"`
	}
	s.do("GET", "/api/v1/jobs/"+jobID, nil, &made, 200)
	if !slices.Equal(made.Args.Hooks, []string{"freeze"}) || made.Args.LimitUploadKiB != 512 {
		t.Fatalf("job args %+v", made.Args)
	}

	// A bulk run: the host that has the hook gets a job, the other is
	// refused with the reason.
	var bulk struct {
		JobIDs  []string `json:"job_ids"`
		Refused []struct {
			HostID string `json:"host_id"`
			Error  string `json:"error"`
		} `json:"refused"`
	}
	s.do("POST", "/api/v1/jobs/bulk", map[string]any{"selector": map[string]string{"role": "web"}, "kind": "backup", "repo_id": repoID,
		"args": map[string]any{"paths": []string{"/srv"}, "hooks": []string{"notify"}}}, &bulk, 201)
	if len(bulk.JobIDs) != 1 || len(bulk.Refused) != 1 || bulk.Refused[0].HostID != db || !strings.Contains(bulk.Refused[0].Error, `host db-1 has no hook "notify" (it reports: none)`) {
		t.Errorf("bulk: %+v", bulk)
	}

	// A host's own schedule, and a restore into a source.
	s.do("PUT", "/api/v1/hosts/"+db+"/schedules", []map[string]any{{"name": "dump", "kind": "backup", "cron": "0 2 * * *", "enabled": true,
		"repo_id": repoID, "sources": []string{"pg"}}}, &refusal, 400)
	if !strings.Contains(refusal["error"], `schedule "dump": host db-1 has no source "pg"`) {
		t.Errorf("schedule refusal: %q", refusal["error"])
	}
	var sched map[string]any
	s.do("PUT", "/api/v1/hosts/"+web+"/schedules", []map[string]any{{"name": "dump", "kind": "backup", "cron": "0 2 * * *", "enabled": true,
		"repo_id": repoID, "sources": []string{"pg"}, "hooks": []string{"freeze"}, "limit_download_kib": 100}}, &sched, 200)
	if got := sched["schedules"].([]any)[0].(map[string]any); names(got["sources"]) != "pg" || got["limit_download_kib"].(float64) != 100 {
		t.Errorf("schedule stored as %v", got)
	}
	s.do("POST", "/api/v1/restores", map[string]any{"repo_id": repoID, "snapshot_id": "latest", "target_host_id": db, "to_source": "pg"}, &refusal, 400)
	if !strings.Contains(refusal["error"], `host db-1 has no source "pg" with a restore command`) {
		t.Errorf("restore refusal: %q", refusal["error"])
	}
	var restore map[string]string
	s.do("POST", "/api/v1/restores", map[string]any{"repo_id": repoID, "snapshot_id": "latest", "target_host_id": web, "to_source": "pg"}, &restore, 201)

	// A policy names anything, and shows who lacks it.
	var pol struct {
		Missing []struct {
			Name, Kind string
			Hosts      int
			HostIDs    []string `json:"host_ids"`
		} `json:"missing"`
	}
	s.do("POST", "/api/v1/policies", map[string]any{"name": "web dumps", "selector": map[string]string{"role": "web"}, "repo_id": repoID,
		"schedules": []map[string]any{{"name": "dump", "kind": "backup", "cron": "0 3 * * *", "enabled": true, "sources": []string{"pg"}, "hooks": []string{"future-hook"}}}}, &pol, 201)
	if len(pol.Missing) != 2 || pol.Missing[0].Name != "future-hook" || pol.Missing[0].Hosts != 2 ||
		pol.Missing[1].Name != "pg" || pol.Missing[1].Kind != "source" || pol.Missing[1].Hosts != 1 || !slices.Equal(pol.Missing[1].HostIDs, []string{db}) {
		t.Errorf("policy missing: %+v", pol.Missing)
	}

	// The agent's result: hook runs and per-source snapshots are kept.
	out, _ := json.Marshal(wire.BackupOutput{Snapshots: []wire.SourceSnapshot{{Source: "pg", Status: "failed", Error: "pg_dump: connection refused"}}})
	res, err := wire.Encode(&wire.Result{JobID: jobID, Status: wire.StatusFailed, ExitCode: 1, EndedAt: time.Now().UTC(), Error: "source pg failed", Output: out,
		Hooks: []wire.HookRun{{Name: "freeze", Phase: wire.HookBefore, DurationMS: 5}, {Name: "freeze", Phase: wire.HookOnFailure, ExitCode: 7, OutputTail: "thaw failed"}}})
	if err != nil {
		t.Fatal(err)
	}
	if code := agent.publish(t, wire.ResultTopic(web, jobID), res, false); code != 0 {
		t.Fatalf("result: reason %#x", code)
	}
	var job struct {
		Status string                `json:"status"`
		Hooks  []wire.HookRun        `json:"hooks"`
		Snaps  []wire.SourceSnapshot `json:"source_snapshots"`
	}
	eventually(t, 10*time.Second, "the result stored", func() error {
		s.do("GET", "/api/v1/jobs/"+jobID, nil, &job, 200)
		if job.Status != "failed" {
			return errString("status " + job.Status)
		}
		return nil
	})
	if len(job.Hooks) != 2 || job.Hooks[1].ExitCode != 7 || job.Hooks[1].OutputTail != "thaw failed" || len(job.Snaps) != 1 || job.Snaps[0].Error != "pg_dump: connection refused" {
		t.Errorf("job view: %+v", job)
	}
}

type errString string

func (e errString) Error() string { return string(e) }

func names(v any) string {
	l, _ := v.([]any)
	var out []string
	for _, x := range l {
		s, _ := x.(string)
		out = append(out, s)
	}
	return strings.Join(out, ",")
}
