package e2e

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/wire"
)

type schedulesResp struct {
	Version        int64 `json:"version"`
	AppliedVersion int64 `json:"applied_version"`
	Pending        bool  `json:"pending"`
	Skipped        []struct {
		ID, Reason string
	} `json:"skipped"`
	Schedules []struct {
		ID       string      `json:"id"`
		Name     string      `json:"name"`
		Kind     string      `json:"kind"`
		PolicyID string      `json:"policy_id"`
		NextRuns []time.Time `json:"next_runs"`
	} `json:"schedules"`
}

func (s *server) putSchedules(hostID string, body any) schedulesResp {
	var r schedulesResp
	s.do("PUT", "/api/v1/hosts/"+hostID+"/schedules", body, &r, 200)
	return r
}

func (s *server) schedules(hostID string) schedulesResp {
	var r schedulesResp
	s.do("GET", "/api/v1/hosts/"+hostID+"/schedules", nil, &r, 200)
	return r
}

func (s *server) waitApplied(hostID string, version int64) {
	s.t.Helper()
	eventually(s.t, time.Minute, fmt.Sprintf("schedule version %d applied", version), func() error {
		if r := s.schedules(hostID); r.AppliedVersion != version {
			return errorf("applied %d", r.AppliedVersion)
		}
		return nil
	})
}

type schedJob struct {
	harness.Job
	ScheduleID  string    `json:"schedule_id"`
	ScheduledAt time.Time `json:"scheduled_at"`
	CatchUp     bool      `json:"catch_up"`
}

func (s *server) hostJobs(hostID string) []schedJob {
	var jobs []schedJob
	s.do("GET", "/api/v1/jobs?limit=500&host_id="+hostID, nil, &jobs, 200)
	sort.Slice(jobs, func(i, j int) bool { return jobs[i].CreatedAt.Before(jobs[j].CreatedAt) })
	return jobs
}

func scheduledOnly(jobs []schedJob) []schedJob {
	var out []schedJob
	for _, j := range jobs {
		if j.ActorKind == "schedule" {
			out = append(out, j)
		}
	}
	return out
}

func TestScheduledBackupsRunRealRestic(t *testing.T) {
	testScheduledBackupsRunRealRestic(t, embeddedBroker)
}

func testScheduledBackupsRunRealRestic(t *testing.T, mode brokerMode) {
	f := newFleetOn(t, mode.server(t), "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 30)

	t0 := time.Now()
	r := f.srv.putSchedules(f.host.ID, []map[string]any{{
		"name": "every-3s", "kind": "backup", "cron": "@every 3s", "enabled": true,
		"repo_id": f.repoID, "paths": []string{src}, "tags": []string{"sched"},
	}, {
		"name": "disabled", "kind": "backup", "cron": "@every 1s", "enabled": false,
		"repo_id": f.repoID, "paths": []string{src},
	}})
	if r.Version != 1 || len(r.Schedules) != 2 || r.Schedules[0].ID == "" {
		t.Fatalf("PUT schedules: %+v", r)
	}
	if len(r.Schedules[0].NextRuns) != 5 || len(r.Schedules[1].NextRuns) != 0 {
		t.Errorf("next runs: enabled %d, disabled %d; want 5 and 0", len(r.Schedules[0].NextRuns), len(r.Schedules[1].NextRuns))
	}
	f.srv.waitApplied(f.host.ID, 1)
	t.Logf("schedule change applied after %s", time.Since(t0))
	schedID, disabledID := r.Schedules[0].ID, r.Schedules[1].ID

	var done []schedJob
	eventually(t, 2*time.Minute, "two scheduled backups", func() error {
		done = nil
		for _, j := range scheduledOnly(f.srv.hostJobs(f.host.ID)) {
			if j.Status == "succeeded" {
				done = append(done, j)
			}
		}
		if len(done) < 2 {
			return errorf("%d succeeded", len(done))
		}
		return nil
	})
	snaps := map[string]bool{}
	for _, s := range resticSnapshots(t, f.repoURL, f.password) {
		snaps[s.ID] = true
	}
	seen := map[time.Time]bool{}
	for _, j := range done {
		if j.ScheduleID != schedID || j.Actor != "every-3s" {
			t.Errorf("job %s: schedule %q actor %q, want %s / every-3s", j.ID, j.ScheduleID, j.Actor, schedID)
		}
		if j.ScheduleID == disabledID {
			t.Errorf("the disabled schedule ran job %s", j.ID)
		}
		if !snaps[j.SnapshotID] {
			t.Errorf("job %s names snapshot %s, which restic does not list", j.ID, j.SnapshotID)
		}
		if seen[j.ScheduledAt] {
			t.Errorf("two jobs for the window %s", j.ScheduledAt)
		}
		seen[j.ScheduledAt] = true
	}

	// Disabling everything stops the fires.
	f.srv.putSchedules(f.host.ID, []map[string]any{{
		"id": schedID, "name": "every-3s", "kind": "backup", "cron": "@every 3s", "enabled": false,
		"repo_id": f.repoID, "paths": []string{src},
	}})
	f.srv.waitApplied(f.host.ID, 2)
	time.Sleep(2 * time.Second) // let any fire made before the change land
	before := len(scheduledOnly(f.srv.hostJobs(f.host.ID)))
	time.Sleep(7 * time.Second)
	if after := len(scheduledOnly(f.srv.hostJobs(f.host.ID))); after != before {
		t.Fatalf("%d scheduled jobs appeared after the schedule was disabled", after-before)
	}
}

func TestCatchUpFiresOnceAfterAgentDowntime(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 5)
	r := f.srv.putSchedules(f.host.ID, []map[string]any{{
		"name": "every-2s", "kind": "backup", "cron": "@every 2s", "enabled": true, "repo_id": f.repoID, "paths": []string{src},
	}})
	f.srv.waitApplied(f.host.ID, r.Version)
	eventually(t, time.Minute, "a first scheduled job", func() error {
		if n := len(scheduledOnly(f.srv.hostJobs(f.host.ID))); n < 1 {
			return errorf("%d jobs", n)
		}
		return nil
	})
	stop(t, f.agent.Proc)
	stopped := time.Now() // the agent is gone: no fire after this but the catch-up
	f.srv.waitOnline(f.host.ID, false)
	time.Sleep(8 * time.Second) // four windows pass
	restarted := time.Now()
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	time.Sleep(5 * time.Second)

	var catchUps, during int
	for _, j := range scheduledOnly(f.srv.hostJobs(f.host.ID)) {
		if j.CatchUp {
			catchUps++
			// The catch-up is for a window the downtime missed. (Its
			// window may also be after restarted: a loaded machine can
			// take more than one 2 s window to start the agent.)
			if !j.ScheduledAt.After(stopped) {
				t.Errorf("the catch-up job is for %s, before the agent stopped at %s", j.ScheduledAt, stopped)
			}
			continue
		}
		// The windows of the downtime, however long a loaded machine made
		// it: no ordinary fire may be among them.
		if j.ScheduledAt.After(stopped.Add(time.Second)) && j.ScheduledAt.Before(restarted) {
			during++
		}
	}
	if catchUps != 1 {
		t.Fatalf("%d catch-up jobs after the downtime, want exactly 1", catchUps)
	}
	if during != 0 {
		t.Fatalf("%d ordinary jobs for windows inside the downtime, want none (only the catch-up)", during)
	}
}

func TestFireDeliveryRules(t *testing.T) {
	s := newServer(t)
	a, aID := s.credential("host-a")
	b, bID := s.credential("host-b")
	repo := s.createRepo("r", "/srv/nowhere", "pw", aID, bID)
	r := s.putSchedules(aID, []map[string]any{
		{"name": "nightly", "kind": "backup", "cron": "0 2 * * *", "enabled": true, "repo_id": repo, "paths": []string{"/etc"}},
		{"name": "off", "kind": "backup", "cron": "0 3 * * *", "enabled": false, "repo_id": repo, "paths": []string{"/etc"}},
	})
	nightly, off := r.Schedules[0].ID, r.Schedules[1].ID

	ca, _, err := dialMQTT(t, s, aID, aID, a.Password, nil)
	if err != nil {
		t.Fatal(err)
	}
	cb, _, err := dialMQTT(t, s, bID, bID, b.Password, nil)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 11, 27, 2, 0, 0, 0, time.UTC)
	fire := func(id, sched string) []byte {
		p, err := wire.Encode(&wire.Fire{FireID: id, ScheduleID: sched, ScheduleVersion: r.Version, ScheduledAt: at, FiredAt: at.Add(time.Minute)})
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	// The same fire twice, and a second fire (new fire ID) for the same window: one job.
	for _, id := range []string{"fire-1", "fire-1", "fire-2"} {
		if code := ca.publish(t, wire.FiresTopic(aID), fire(id, nightly), false); code != 0 {
			t.Fatalf("fire %s: reason %#x", id, code)
		}
	}
	jobs := scheduledOnly(s.hostJobs(aID))
	if len(jobs) != 1 || jobs[0].ScheduleID != nightly || jobs[0].Actor != "nightly" {
		t.Fatalf("jobs after a repeated fire: %+v", jobs)
	}
	// A disabled schedule's fire is refused.
	if code := ca.publish(t, wire.FiresTopic(aID), fire("fire-3", off), false); code != 0x99 {
		t.Errorf("fire of a disabled schedule: reason %#x, want 0x99", code)
	}
	// Host B cannot fire host A's schedule, on its own topic or on A's.
	if code := cb.publish(t, wire.FiresTopic(bID), fire("fire-4", nightly), false); code != 0x99 {
		t.Errorf("B firing A's schedule: reason %#x, want 0x99", code)
	}
	if code := cb.publish(t, wire.FiresTopic(aID), fire("fire-5", nightly), false); code != 0x87 {
		t.Errorf("B publishing on A's fire topic: reason %#x, want 0x87", code)
	}
	if n := len(scheduledOnly(s.hostJobs(aID))); n != 1 {
		t.Errorf("%d jobs on A after refused fires, want 1", n)
	}
	if n := len(s.hostJobs(bID)); n != 0 {
		t.Errorf("%d jobs on B", n)
	}
	// Invalid schedules are refused before anything is published.
	for _, bad := range []map[string]any{
		{"name": "x", "kind": "backup", "cron": "61 * * * *", "enabled": true, "repo_id": repo, "paths": []string{"/"}},
		{"name": "x", "kind": "backup", "cron": "@daily", "enabled": true, "repo_id": repo, "paths": []string{"--delete"}},
		{"name": "x", "kind": "forget", "cron": "@daily", "enabled": true, "repo_id": repo},
		{"name": "x", "kind": "rm", "cron": "@daily", "enabled": true, "repo_id": repo},
		{"name": "x", "kind": "backup", "cron": "@daily", "enabled": true, "repo_id": "repo-nope", "paths": []string{"/"}},
		{"id": "sch-forged", "name": "x", "kind": "backup", "cron": "@daily", "enabled": true, "repo_id": repo, "paths": []string{"/"}},
	} {
		s.do("PUT", "/api/v1/hosts/"+aID+"/schedules", []any{bad}, nil, 400)
	}
	if v := s.schedules(aID).Version; v != r.Version {
		t.Errorf("refused edits bumped the version to %d", v)
	}
}
