package e2e

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// copyAgentCommand waits for the next command that pick accepts (the
// console's own health jobs and others are passed over).
func copyAgentCommand(t *testing.T, c *mqttClient, what string, pick func(wire.Command) bool) wire.Command {
	t.Helper()
	deadline := time.After(20 * time.Second)
	for {
		select {
		case p := <-c.received:
			cmd, err := wire.DecodeCommand(p.Payload)
			if err == nil && pick(cmd) {
				return cmd
			}
		case <-deadline:
			t.Fatalf("no command: %s", what)
		}
	}
}

// publishResult publishes a job's result as its agent would.
func publishResult(t *testing.T, c *mqttClient, host, jobID, snapshotID string, out any) {
	t.Helper()
	var b json.RawMessage
	if out != nil {
		b, _ = json.Marshal(out)
	}
	res := wire.Result{JobID: jobID, Status: wire.StatusSucceeded, StartedAt: time.Now().UTC().Add(-time.Second), EndedAt: time.Now().UTC(),
		SnapshotID: snapshotID, Output: b}
	p, err := wire.Encode(&res)
	if err != nil {
		t.Fatal(err)
	}
	if code := c.publish(t, wire.ResultTopic(host, jobID), p, false); code != 0 {
		t.Fatalf("result: reason %#x", code)
	}
}

func (s *server) waitJobStatus(id, status string) {
	s.t.Helper()
	eventually(s.t, 15*time.Second, "job "+id+" "+status, func() error {
		if j := s.job(id); j.Status != status {
			return errString("status " + j.Status)
		}
		return nil
	})
}

// snap is a snapshot as restic snapshots --json lists it.
type snap struct {
	ID       string    `json:"id"`
	ShortID  string    `json:"short_id"`
	Original string    `json:"original,omitempty"`
	Time     time.Time `json:"time"`
	Hostname string    `json:"hostname"`
	Paths    []string  `json:"paths"`
}

func mkSnap(c byte, original, hostname string, at time.Time) snap {
	id := strings.Repeat(string(c), 64)
	return snap{ID: id, ShortID: id[:8], Original: original, Time: at, Hostname: hostname, Paths: []string{"/etc"}}
}

// listSnapshots makes a snapshots job on repo for host, and answers it
// with list as the agent (the console caches an unfiltered list).
func listSnapshots(t *testing.T, s *server, c *mqttClient, host, repo string, list []snap) {
	t.Helper()
	id := s.createJob(host, map[string]any{"kind": "snapshots", "repo_id": repo})
	copyAgentCommand(t, c, "snapshots "+id, func(cmd wire.Command) bool { return cmd.JobID == id })
	publishResult(t, c, host, id, "", list)
	s.waitJobStatus(id, "succeeded")
}

type copyLagView struct {
	ToRepoID         string     `json:"to_repo_id"`
	MissingSnapshots int        `json:"missing_snapshots"`
	OldestMissingAt  *time.Time `json:"oldest_missing_at"`
}

func (s *server) waitCopyLag(repo, to string, missing int) copyLagView {
	s.t.Helper()
	var found copyLagView
	eventually(s.t, 15*time.Second, "copy lag of "+repo, func() error {
		var r struct {
			Health *struct {
				CopyLag []copyLagView `json:"copy_lag"`
			} `json:"health"`
		}
		s.do("GET", "/api/v1/repos/"+repo, nil, &r, 200)
		if r.Health == nil {
			return errString("no health")
		}
		for _, l := range r.Health.CopyLag {
			if l.ToRepoID == to && l.MissingSnapshots == missing {
				found = l
				return nil
			}
		}
		return errString("lag not yet as expected")
	})
	return found
}

func (s *server) waitAlert(rule, state string) {
	s.t.Helper()
	eventually(s.t, 20*time.Second, rule+" "+state, func() error {
		var alerts []map[string]any
		s.do("GET", "/api/v1/alerts?all=1", nil, &alerts, 200)
		for _, a := range alerts {
			if a["rule"] == rule && a["state"] == state {
				return nil
			}
		}
		return errString("not yet")
	})
}

// The console's side of copies, against a real server with raw MQTT
// clients as agents: a copy's command carries the destination sealed and
// the host's restic host name; what cannot run is refused; a policy's
// copy follows a backup once however often its result arrives; the copy
// lag rises and falls with the two repositories' snapshot lists (restic's
// original), with the copy_lag alert and the compliance report's column.
func TestCopiesThroughTheConsole(t *testing.T) {
	s := newServer(t, "--alert-interval=1s")
	web, webAgent := drillAgent(t, s, "web-1", "web1.example", nil)
	other, _ := drillAgent(t, s, "other", "other.example", nil)
	src := s.createRepo("site-a", "rest:http://127.0.0.1:9/a/", "pw-a", web, other)
	dst := s.createRepo("site-b", "rest:http://127.0.0.1:9/b/", "pw-b", web)

	// A copy now: the console sets the host name; both repositories sealed.
	jobID := s.createJob(web, map[string]any{"kind": "copy", "repo_id": src, "args": map[string]any{"to_repo_id": dst, "hostname": "evil"}})
	cmd := copyAgentCommand(t, webAgent, "copy "+jobID, func(c wire.Command) bool { return c.JobID == jobID })
	var a wire.CopyArgs
	if err := json.Unmarshal(cmd.Args, &a); err != nil || cmd.Kind != wire.JobCopy || a.ToRepoID != dst || a.Hostname != "web1.example" {
		t.Fatalf("copy command %s %s", cmd.Kind, cmd.Args)
	}
	if cmd.SealedRepo == "" || cmd.SealedToRepo == "" || cmd.SealedRepo == cmd.SealedToRepo {
		t.Fatal("the copy command lacks a sealed repository")
	}
	publishResult(t, webAgent, web, jobID, "", wire.CopyOutput{Copied: []string{strings.Repeat("a", 64)}, Skipped: 2})
	s.waitJobStatus(jobID, "succeeded")
	var out wire.CopyOutput
	if err := json.Unmarshal(s.job(jobID).Output, &out); err != nil || len(out.Copied) != 1 || out.Skipped != 2 {
		t.Errorf("copy output %+v %v", out, err)
	}

	// Refused: the source as destination, a host not bound to the destination.
	var refusal map[string]string
	s.do("POST", "/api/v1/hosts/"+web+"/jobs", map[string]any{"kind": "copy", "repo_id": src, "args": map[string]any{"to_repo_id": src}}, &refusal, 400)
	if !strings.Contains(refusal["error"], "another repository") {
		t.Errorf("copy to itself: %q", refusal["error"])
	}
	s.do("POST", "/api/v1/hosts/"+other+"/jobs", map[string]any{"kind": "copy", "repo_id": src, "args": map[string]any{"to_repo_id": dst}}, &refusal, 400)
	if !strings.Contains(refusal["error"], "not bound to repository site-b") {
		t.Errorf("unbound destination: %q", refusal["error"])
	}

	// A policy copying after backups, with a lag threshold of 1.
	s.do("PATCH", "/api/v1/hosts/"+web, map[string]any{"labels": map[string]string{"role": "web"}}, nil, 200)
	var pol struct {
		ID string `json:"id"`
	}
	s.do("POST", "/api/v1/policies", map[string]any{"name": "web", "selector": map[string]string{"role": "web"}, "repo_id": src, "rpo": "26h",
		"copy_to_repo_id": dst, "copy_lag_max": 1}, &pol, 201)
	backup := s.createJob(web, map[string]any{"kind": "backup", "repo_id": src, "args": map[string]any{"paths": []string{"/etc"}}})
	copyAgentCommand(t, webAgent, "backup "+backup, func(c wire.Command) bool { return c.JobID == backup })
	sid := strings.Repeat("c", 64)
	publishResult(t, webAgent, web, backup, sid, nil)
	publishResult(t, webAgent, web, backup, sid, nil) // redelivered
	s.waitJobStatus(backup, "succeeded")
	pc := copyAgentCommand(t, webAgent, "the policy's copy", func(c wire.Command) bool { return c.Kind == wire.JobCopy })
	if pc.SealedToRepo == "" || !strings.Contains(string(pc.Args), `"to_repo_id":"`+dst+`"`) {
		t.Errorf("policy copy command %s", pc.Args)
	}
	time.Sleep(time.Second) // room for a second copy, if there were one
	var policyCopies []string
	for _, j := range s.jobs() {
		if j.Kind == wire.JobCopy && j.ActorKind == "policy" {
			policyCopies = append(policyCopies, j.ID)
			if j.Actor != pol.ID || j.RepoID != src || j.HostID != web {
				t.Errorf("policy copy job %+v", j)
			}
		}
	}
	if len(policyCopies) != 1 || policyCopies[0] != pc.JobID {
		t.Fatalf("policy copies %v, want one (%s)", policyCopies, pc.JobID)
	}
	publishResult(t, webAgent, web, pc.JobID, "", wire.CopyOutput{Copied: []string{sid}})
	s.waitJobStatus(pc.JobID, "succeeded")

	// The lag from the two lists: three snapshots, one copied.
	t0 := time.Now().UTC().Add(-3 * time.Hour).Truncate(time.Second)
	srcList := []snap{mkSnap('a', "", "web1.example", t0), mkSnap('b', "", "web1.example", t0.Add(time.Hour)), mkSnap('c', "", "web1.example", t0.Add(2*time.Hour))}
	listSnapshots(t, s, webAgent, web, src, srcList)
	listSnapshots(t, s, webAgent, web, dst, []snap{mkSnap('1', srcList[0].ID, "web1.example", t0)})
	l := s.waitCopyLag(src, dst, 2)
	if l.OldestMissingAt == nil || !l.OldestMissingAt.Equal(t0.Add(time.Hour)) {
		t.Errorf("oldest missing %v, want %v", l.OldestMissingAt, t0.Add(time.Hour))
	}
	s.waitAlert("copy_lag", "firing")
	if rows := s.complianceCSV(); len(rows) != 1 || rows[0]["copy_lag"] != "2" {
		t.Errorf("compliance rows %v", rows)
	}

	// Copied: the lag falls and the alert resolves.
	listSnapshots(t, s, webAgent, web, dst, []snap{mkSnap('1', srcList[0].ID, "web1.example", t0), mkSnap('2', srcList[1].ID, "web1.example", t0), mkSnap('3', srcList[2].ID, "web1.example", t0)})
	s.waitCopyLag(src, dst, 0)
	s.waitAlert("copy_lag", "resolved")
	if rows := s.complianceCSV(); len(rows) != 1 || rows[0]["copy_lag"] != "0" {
		t.Errorf("compliance rows after the copy %v", rows)
	}
}
