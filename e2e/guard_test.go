package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// A compromised endpoint of an append-only repository cannot get its real
// snapshots deleted: it uploads a snapshot dated 2099 (so that a retention
// policy would keep the forgery and drop the real ones) and forges fires of
// its forget schedule. The console refuses fires that are not the
// schedule's own times; the one real fire's forget runs on the maintenance
// host, is previewed by its guard and held for an admin, deleting nothing.
// Real restic, rest-server --append-only, both agents and a raw MQTT client
// with the endpoint's own credential.
func TestForgedSnapshotAndFiresDeleteNothing(t *testing.T) {
	s := newServer(t)
	root := t.TempDir()
	endpointRS := restServer(t, root, "--append-only")
	maintRS := restServer(t, root)
	endpointURL := "rest:http://" + endpointRS + "/web-1/"
	password := "guarded-secret"

	ep := s.createHost("web-1")
	epAgent := enrollAgent(t, s, ep.EnrollToken, testenv.Restic(t))
	epAgent.start(t)
	mh := s.createHost("maintenance")
	mAgent := enrollAgent(t, s, mh.EnrollToken, testenv.Restic(t))
	mAgent.start(t)
	s.waitOnline(ep.ID, true)
	s.waitOnline(mh.ID, true)
	var repo struct{ ID string }
	s.do("POST", "/api/v1/repos", map[string]any{"name": "web-1", "url": endpointURL, "password": password,
		"maintenance": map[string]any{"url": "rest:http://" + maintRS + "/web-1/", "host_id": mh.ID}, "hosts": []string{ep.ID}}, &repo, 201)
	f := &fleet{srv: s, host: ep, agent: epAgent, repoURL: endpointURL, repoID: repo.ID, password: password}
	f.initRepo(t)
	src := makeTree(t, 10)
	for range 3 {
		f.run(t, "backup", map[string]any{"paths": []string{src}})
	}
	r := s.putSchedules(ep.ID, []map[string]any{{"name": "forget", "kind": "forget", "cron": "0 3 * * *", "enabled": true,
		"repo_id": repo.ID, "retention": map[string]any{"keep_last": 3}}})
	s.waitApplied(ep.ID, r.Version)
	forgetID := r.Schedules[0].ID

	// The forgery: with the endpoint's own append-only credentials, a
	// snapshot dated 2099.
	pw := filepath.Join(t.TempDir(), "pw")
	_ = os.WriteFile(pw, []byte(password), 0o600)
	if out, err := exec.Command(testenv.Restic(t), "-r", endpointURL, "--password-file", pw, "--no-cache",
		"backup", "--time", "2099-01-01 00:00:00", src).CombinedOutput(); err != nil {
		t.Fatalf("forged backup: %v\n%s", err, out)
	}
	if n := len(resticSnapshots(t, endpointURL, password)); n != 4 {
		t.Fatalf("%d snapshots with the forgery, want 4", n)
	}

	// The endpoint's agent is taken over: its credential, on a raw client.
	stop(t, epAgent.Proc)
	var cfg struct{ Username, Password string }
	b, err := os.ReadFile(epAgent.Config)
	if err != nil || yaml.Unmarshal(b, &cfg) != nil || cfg.Password == "" {
		t.Fatalf("agent config: %v", err)
	}
	mc, _, err := dialMQTT(t, s, ep.ID, cfg.Username, cfg.Password, nil)
	if err != nil {
		t.Fatalf("the endpoint's credential does not connect: %v", err)
	}
	fire := func(id string, at time.Time) byte {
		p, err := wire.Encode(&wire.Fire{FireID: id, ScheduleID: forgetID, ScheduleVersion: r.Version, ScheduledAt: at, FiredAt: time.Now().UTC()})
		if err != nil {
			t.Fatal(err)
		}
		return mc.publish(t, wire.FiresTopic(ep.ID), p, false)
	}
	tick := time.Now().UTC().Truncate(24 * time.Hour).Add(-24*time.Hour + 3*time.Hour) // yesterday 03:00
	for i, at := range []time.Time{time.Now().UTC(), tick.Add(7 * time.Minute), tick.Add(48 * time.Hour), time.Date(2099, 1, 1, 3, 0, 0, 0, time.UTC)} {
		if code := fire("forged-"+string(rune('a'+i)), at); code < 0x80 {
			t.Errorf("a forged fire for %s was accepted (reason %#x)", at, code)
		}
	}
	if code := fire("real", tick); code >= 0x80 {
		t.Fatalf("the schedule's own fire was refused: %#x", code)
	}
	for i, at := range []time.Time{tick, tick.Add(-24 * time.Hour)} { // again; an older one
		fire("again-"+string(rune('a'+i)), at)
	}
	var held struct {
		ID, Status, HostID, Error string
	}
	eventually(t, 2*time.Minute, "the forget held on the maintenance host", func() error {
		jobs := scheduledOnly(s.hostJobs(mh.ID))
		if len(jobs) != 1 {
			return errorf("%d scheduled jobs on the maintenance host", len(jobs))
		}
		s.do("GET", "/api/v1/jobs/"+jobs[0].ID, nil, &held, 200)
		if held.Status != "held" {
			return errorf("forget is %s (%s)", held.Status, held.Error)
		}
		return nil
	})
	if !strings.Contains(held.Error, "dated after") {
		t.Errorf("held for %q, want the future-dated snapshot named", held.Error)
	}
	// The alert follows the held job (its observer runs after the store).
	eventually(t, 30*time.Second, "a critical forget_held alert", func() error {
		var alerts []struct{ Rule, State, Severity string }
		s.do("GET", "/api/v1/alerts", nil, &alerts, 200)
		for _, a := range alerts {
			if a.Rule == "forget_held" && a.State == "firing" && a.Severity == "critical" {
				return nil
			}
		}
		return errorf("alerts %+v", alerts)
	})
	if n := len(resticSnapshots(t, endpointURL, password)); n != 4 {
		t.Fatalf("%d snapshots after the forged fires, want all 4", n)
	}
	// An admin cancels it: nothing was, or is, deleted.
	s.do("POST", "/api/v1/jobs/"+held.ID+"/cancel", nil, nil, 200)
	var after struct{ Status string }
	s.do("GET", "/api/v1/jobs/"+held.ID, nil, &after, 200)
	if after.Status != "cancelled" {
		t.Errorf("cancelled held forget is %s", after.Status)
	}
	if n := len(resticSnapshots(t, endpointURL, password)); n != 4 {
		t.Fatalf("%d snapshots in the end, want all 4", n)
	}
}
