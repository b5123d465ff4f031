package e2e

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// drillAgent enrols a host and connects a raw MQTT client as its agent:
// it reports a restic host name (empty: none) and hooks, and subscribes
// to its commands.
func drillAgent(t *testing.T, s *server, name, hostname string, hooks []string) (string, *mqttClient) {
	t.Helper()
	cred, id := s.credential(name)
	c, _, err := dialMQTT(t, s, id, id, cred.Password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := c.subscribe(t, wire.CommandsTopic(id)); code > 2 {
		t.Fatalf("subscribe: reason %#x", code)
	}
	st, err := wire.Encode(&wire.Status{Online: true, OS: "linux", Arch: "amd64", AgentVersion: "test", StartedAt: time.Now().UTC(),
		Hostname: hostname, Hooks: hooks})
	if err != nil {
		t.Fatal(err)
	}
	if code := c.publish(t, wire.StatusTopic(id), st, true); code != 0 {
		t.Fatalf("status: reason %#x", code)
	}
	s.waitOnline(id, true)
	return id, c
}

// drillCommand waits for the command of job jobID (other commands, such as
// the console's own health jobs, are passed over) and decodes its args.
func drillCommand(t *testing.T, c *mqttClient, jobID string) wire.DrillArgs {
	t.Helper()
	deadline := time.After(15 * time.Second)
	for {
		select {
		case p := <-c.received:
			cmd, err := wire.DecodeCommand(p.Payload)
			if err != nil || cmd.JobID != jobID {
				continue
			}
			if cmd.Kind != wire.JobDrill {
				t.Fatalf("command kind %s", cmd.Kind)
			}
			var a wire.DrillArgs
			if err := json.Unmarshal(cmd.Args, &a); err != nil {
				t.Fatal(err)
			}
			return a
		case <-deadline:
			t.Fatalf("no command for %s", jobID)
		}
	}
}

// publishDrill publishes a drill's result as its agent would.
func publishDrill(t *testing.T, c *mqttClient, host, jobID, status string, out wire.DrillOutput) {
	t.Helper()
	b, _ := json.Marshal(out)
	res := wire.Result{JobID: jobID, Status: status, StartedAt: time.Now().UTC().Add(-time.Minute), EndedAt: time.Now().UTC(), Output: b}
	if status == wire.StatusFailed {
		res.ExitCode, res.Error = 1, fmt.Sprintf("%d files did not come back as backed up", len(out.Mismatches))
	}
	p, err := wire.Encode(&res)
	if err != nil {
		t.Fatal(err)
	}
	if code := c.publish(t, wire.ResultTopic(host, jobID), p, false); code != 0 {
		t.Fatalf("result: reason %#x", code)
	}
}

type drillHost struct {
	LastDrill *struct {
		JobID                 string  `json:"job_id"`
		Status                string  `json:"status"`
		EndedAt               string  `json:"ended_at"`
		SnapshotID            string  `json:"snapshot_id"`
		RestoreBytesPerS      float64 `json:"restore_bytes_per_s"`
		EstimatedFullRestoreS float64 `json:"estimated_full_restore_s"`
		FilesChecked          int     `json:"files_checked"`
		Mismatches            int     `json:"mismatches"`
		RanOn                 string  `json:"ran_on"`
	} `json:"last_drill"`
	ProvenRestorableAt *time.Time `json:"proven_restorable_at"`
}

func (s *server) waitDrill(hostID, jobID string) drillHost {
	s.t.Helper()
	var h drillHost
	eventually(s.t, 15*time.Second, "host "+hostID+" records drill "+jobID, func() error {
		h = drillHost{}
		s.do("GET", "/api/v1/hosts/"+hostID, nil, &h, 200)
		if h.LastDrill == nil || h.LastDrill.JobID != jobID {
			return errString("last drill not yet recorded")
		}
		return nil
	})
	return h
}

// complianceCSV reads the compliance report as CSV, by header name.
func (s *server) complianceCSV() []map[string]string {
	s.t.Helper()
	req, err := http.NewRequest("GET", s.API.URL("/api/v1/reports/compliance?format=csv"), nil)
	s.check(err)
	if s.API.Token != "" {
		req.Header.Set("Authorization", "Bearer "+s.API.Token)
	}
	resp, err := s.API.HTTP.Do(req)
	s.check(err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	recs, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if err != nil || resp.StatusCode != 200 || len(recs) == 0 {
		s.t.Fatalf("csv: %d %v %s", resp.StatusCode, err, b)
	}
	var out []map[string]string
	for _, r := range recs[1:] {
		m := map[string]string{}
		for i, k := range recs[0] {
			m[k] = r[i]
		}
		out = append(out, m)
	}
	return out
}

// The console's side of restore drills, against a real server with raw
// MQTT clients as agents: a drill's command carries the host it proves
// and its restic host name; a crafted result is recorded on that host
// (last drill, proven time, history), in the compliance report and, for a
// failure, as a drill_failed alert naming the paths; a drill with a
// target runs there and still proves the first host; what cannot run is
// refused with the reason.
func TestDrillsThroughTheConsole(t *testing.T) {
	s := newServer(t)
	web, webAgent := drillAgent(t, s, "web-1", "web1.example", []string{"pg-load"})
	box, boxAgent := drillAgent(t, s, "drillbox", "drillbox.example", []string{"scratch-db"})
	lone, _ := drillAgent(t, s, "lone", "", nil)
	stranger, _ := drillAgent(t, s, "stranger", "stranger.example", nil)
	repo := s.createRepo("main", "rest:http://127.0.0.1:9/main/", "pw", web, box, lone)

	// A drill now: the console sets host_id and hostname, whatever is sent.
	jobID := s.createJob(web, map[string]any{"kind": "drill", "repo_id": repo,
		"args": map[string]any{"sample_files": 10, "sample_bytes": 1 << 20, "host_id": stranger, "hostname": "evil", "probe": "pg-load"}})
	a := drillCommand(t, webAgent, jobID)
	if a.HostID != web || a.Hostname != "web1.example" || a.SampleFiles != 10 || a.Probe != "pg-load" || a.TargetHostID != "" {
		t.Fatalf("command args %+v", a)
	}
	publishDrill(t, webAgent, web, jobID, wire.StatusSucceeded, wire.DrillOutput{SnapshotID: strings.Repeat("ab", 32), FilesChecked: 10, BytesChecked: 1 << 20,
		Sample: []string{"/etc/hosts"}, RestoreBytesPerS: 40 << 20, RestoreSeconds: 0.025, SnapshotBytes: 4 << 30, EstimatedFullRestoreS: 102.4,
		Probe: &wire.DrillProbe{Name: "pg-load", OK: true, Output: "rows: 1200"}})
	h := s.waitDrill(web, jobID)
	if d := h.LastDrill; d.Status != "succeeded" || d.FilesChecked != 10 || d.RestoreBytesPerS != 40<<20 || d.EstimatedFullRestoreS != 102.4 || d.RanOn != "" || h.ProvenRestorableAt == nil {
		t.Errorf("host after a success: %+v proven %v", d, h.ProvenRestorableAt)
	}
	proven := *h.ProvenRestorableAt
	var hist struct {
		Drills []struct {
			JobID            string  `json:"job_id"`
			RestoreBytesPerS float64 `json:"restore_bytes_per_s"`
		} `json:"drills"`
	}
	s.do("GET", "/api/v1/hosts/"+web+"/drills", nil, &hist, 200)
	if len(hist.Drills) != 1 || hist.Drills[0].JobID != jobID || hist.Drills[0].RestoreBytesPerS != 40<<20 {
		t.Errorf("history %+v", hist)
	}

	// A policy with an RPO and a drill cadence: the report has the drill,
	// the host a drill schedule.
	s.do("PATCH", "/api/v1/hosts/"+web, map[string]any{"labels": map[string]string{"role": "web"}}, nil, 200)
	var pol struct {
		ID    string         `json:"id"`
		Drill map[string]any `json:"drill"`
	}
	s.do("POST", "/api/v1/policies", map[string]any{"name": "web", "selector": map[string]string{"role": "web"}, "repo_id": repo, "rpo": "26h",
		"drill": map[string]any{"cron": "0 3 * * 0", "sample_files": 20, "sample_bytes": 8 << 20}}, &pol, 201)
	if pol.Drill["cron"] != "0 3 * * 0" {
		t.Errorf("policy drill %v", pol.Drill)
	}
	var scheds struct {
		Schedules []struct {
			Kind        string `json:"kind"`
			PolicyID    string `json:"policy_id"`
			SampleFiles int    `json:"sample_files"`
		} `json:"schedules"`
	}
	s.do("GET", "/api/v1/hosts/"+web+"/schedules", nil, &scheds, 200)
	if len(scheds.Schedules) != 1 || scheds.Schedules[0].Kind != "drill" || scheds.Schedules[0].PolicyID != pol.ID || scheds.Schedules[0].SampleFiles != 20 {
		t.Errorf("schedules from the policy: %+v", scheds.Schedules)
	}
	var report struct {
		Rows []struct {
			HostID      string     `json:"host_id"`
			LastDrillAt *time.Time `json:"last_drill_at"`
			DrillOK     *bool      `json:"drill_ok"`
		} `json:"rows"`
	}
	s.do("GET", "/api/v1/reports/compliance", nil, &report, 200)
	if len(report.Rows) != 1 || report.Rows[0].HostID != web || report.Rows[0].LastDrillAt == nil || report.Rows[0].DrillOK == nil || !*report.Rows[0].DrillOK {
		t.Errorf("report rows %+v", report.Rows)
	}

	// A failed drill: drill_failed names the paths; still proven at the
	// earlier time; the report says drill_ok false.
	failID := s.createJob(web, map[string]any{"kind": "drill", "repo_id": repo, "args": map[string]any{}})
	drillCommand(t, webAgent, failID)
	publishDrill(t, webAgent, web, failID, wire.StatusFailed, wire.DrillOutput{FilesChecked: 10,
		Mismatches: []wire.DrillMismatch{{Path: "/srv/www/index.html", Reason: "sha256 differs from the live file"}, {Path: "/var/lib/app.db", Reason: "restic: pack damaged"}}})
	h = s.waitDrill(web, failID)
	if h.LastDrill.Status != "failed" || h.LastDrill.Mismatches != 2 || h.ProvenRestorableAt == nil || !h.ProvenRestorableAt.Equal(proven) {
		t.Errorf("host after a failure: %+v proven %v", h.LastDrill, h.ProvenRestorableAt)
	}
	alert := func(state string) map[string]any {
		t.Helper()
		var found map[string]any
		eventually(t, 15*time.Second, "drill_failed "+state, func() error {
			var alerts []map[string]any
			s.do("GET", "/api/v1/alerts?all=1", nil, &alerts, 200)
			for _, a := range alerts {
				if a["rule"] == "drill_failed" && a["host_id"] == web && a["state"] == state {
					found = a
					return nil
				}
			}
			return errString("not yet")
		})
		return found
	}
	if msg, _ := alert("firing")["message"].(string); !strings.Contains(msg, "/srv/www/index.html (sha256 differs from the live file), /var/lib/app.db") {
		t.Errorf("drill_failed message %q", msg)
	}
	if rows := s.complianceCSV(); len(rows) != 1 || rows[0]["drill_ok"] != "false" || rows[0]["last_drill_at"] == "" {
		t.Errorf("csv rows %v", rows)
	}

	// On the drill host: the job is drillbox's, the probe its own hook,
	// the drill proves web and its success resolves drill_failed.
	var refusal map[string]string
	s.do("POST", "/api/v1/hosts/"+web+"/jobs", map[string]any{"kind": "drill", "repo_id": repo,
		"args": map[string]any{"target_host_id": box, "probe": "pg-load"}}, &refusal, 400)
	if !strings.Contains(refusal["error"], `host drillbox has no hook "pg-load" to probe a drill with (it reports: scratch-db)`) {
		t.Errorf("probe refusal: %q", refusal["error"])
	}
	boxJob := s.createJob(web, map[string]any{"kind": "drill", "repo_id": repo, "args": map[string]any{"target_host_id": box, "probe": "scratch-db"}})
	if j := s.job(boxJob); j.HostID != box {
		t.Errorf("the targeted drill is %s's job", j.HostID)
	}
	a = drillCommand(t, boxAgent, boxJob)
	if a.HostID != web || a.Hostname != "web1.example" || a.TargetHostID != box || a.Probe != "scratch-db" {
		t.Fatalf("targeted command args %+v", a)
	}
	publishDrill(t, boxAgent, box, boxJob, wire.StatusSucceeded, wire.DrillOutput{FilesChecked: 12, RestoreBytesPerS: 80 << 20, EstimatedFullRestoreS: 51.2, TargetHostID: box})
	h = s.waitDrill(web, boxJob)
	if h.LastDrill.RanOn != box || h.LastDrill.Status != "succeeded" || !h.ProvenRestorableAt.After(proven) {
		t.Errorf("host after the targeted drill: %+v proven %v", h.LastDrill, h.ProvenRestorableAt)
	}
	alert("resolved")
	var boxHost drillHost
	s.do("GET", "/api/v1/hosts/"+box, nil, &boxHost, 200)
	if boxHost.LastDrill != nil {
		t.Errorf("the drill host was recorded as drilled: %+v", boxHost.LastDrill)
	}

	// Refused: a host that never reported its host name (unless a snapshot
	// is given), a target not bound to the repository.
	s.do("POST", "/api/v1/hosts/"+lone+"/jobs", map[string]any{"kind": "drill", "repo_id": repo, "args": map[string]any{}}, &refusal, 400)
	if !strings.Contains(refusal["error"], "has not reported its host name yet") {
		t.Errorf("no host name: %q", refusal["error"])
	}
	s.createJob(lone, map[string]any{"kind": "drill", "repo_id": repo, "args": map[string]any{"snapshot_id": strings.Repeat("cd", 32)}})
	s.do("POST", "/api/v1/hosts/"+web+"/jobs", map[string]any{"kind": "drill", "repo_id": repo, "args": map[string]any{"target_host_id": stranger}}, &refusal, 400)
	if !strings.Contains(refusal["error"], "host "+stranger+" is not bound to repository main") {
		t.Errorf("unbound target: %q", refusal["error"])
	}
}
