package e2e

// The chaos suite: real server, agents, restic and rest-server processes,
// with faults injected on purpose, and for each fault the same invariants
// (see fault.check). `go test ./e2e -run TestChaos` runs the default size;
// `make chaos` (RM_CHAOS=full) runs more jobs per fault and repetitions.
// The table of faults × outcome is logged and written to
// e2e/artifacts/chaos.md.

import (
	"encoding/json"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"
	"gopkg.in/yaml.v3"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/wire"
)

// TestChaosServer: the control plane dies, restarts and is restored while
// agents work (faults 1, 3, 8).
func TestChaosServer(t *testing.T) {
	t.Parallel()
	sz := chaosSize()
	f := newChaosFleet(t, 2)
	f.faultKillServer(sz)
	f.faultRestartWhileWaiting(sz)
}

// TestChaosAgent: an agent, its restic and its connection die mid-backup;
// messages arrive twice (faults 6, 2, 5, 4).
func TestChaosAgent(t *testing.T) {
	t.Parallel()
	sz := chaosSize()
	f := newChaosFleet(t, 1)
	f.faultStaleLock(sz)
	f.faultKillAgent(sz)
	f.faultCutConnection(sz)
	f.faultDuplicates(sz)
}

// 1. kill -9 the server while a backup runs; restart it on the same data.
// Even repetitions let the backups end while the console is down (results
// wait in the agent's outbox), odd ones restart it while restic still runs.
func (f *chaosFleet) faultKillServer(sz chaosScale) {
	t := f.t
	ft := f.fault(1, "kill -9 the server mid-backup, restart on the same data dir")
	defer ft.finish()
	for rep := range sz.reps {
		f.gate.close()
		var ids []string
		for i := range sz.jobs {
			ids = append(ids, ft.backup(f.agents[i%len(f.agents)], "succeeded"))
		}
		f.waitRunning(ids...)
		f.srv.Proc.Kill()
		if rep%2 == 0 {
			f.gate.open()
			eventually(t, 2*time.Minute, "the backups to end while the server is down", func() error {
				return f.taggedSnapshots(ft, ids)
			})
			f.srv = startServer(t, f.srv.Data, f.srv.HTTPAddr, f.srv.MQTTAddr, "--health-delay=10m")
		} else {
			f.srv = startServer(t, f.srv.Data, f.srv.HTTPAddr, f.srv.MQTTAddr, "--health-delay=10m")
			f.gate.open()
		}
		ft.drain(2 * time.Minute)
	}
	ft.check(3 * time.Minute)
}

// taggedSnapshots is nil once each job has a snapshot with its tag.
func (f *chaosFleet) taggedSnapshots(ft *fault, ids []string) error {
	have := map[string]bool{}
	for _, s := range f.snapshots() {
		for _, tag := range s.Tags {
			have[tag] = true
		}
	}
	for _, tr := range ft.jobs {
		if contains(ids, tr.ID) && !have[tr.Tag] {
			return errorf("no snapshot tagged %s yet", tr.Tag)
		}
	}
	return nil
}

// 3. Agents are offline, jobs wait for them, the server restarts (stop, or
// kill -9 on odd repetitions), then the agents come back.
func (f *chaosFleet) faultRestartWhileWaiting(sz chaosScale) {
	t := f.t
	ft := f.fault(3, "restart the server while commands wait for offline agents")
	defer ft.finish()
	for rep := range sz.reps {
		for _, a := range f.agents {
			stop(t, a.ap.Proc)
		}
		for _, a := range f.agents {
			f.srv.waitOnline(a.host.ID, false)
		}
		var ids []string
		for i := range sz.jobs * len(f.agents) {
			ids = append(ids, ft.backup(f.agents[i%len(f.agents)], "succeeded"))
		}
		f.restartServer(rep%2 == 1)
		for _, id := range ids {
			if j := f.srv.job(id); j.Status != "queued" {
				ft.violation("job %s for an offline agent is %s after the server restart, want queued", id, j.Status)
			}
		}
		for _, a := range f.agents {
			a.start()
		}
		ft.drain(2 * time.Minute)
	}
	ft.check(3 * time.Minute)
	for _, a := range f.agents {
		var mine []string
		for _, tr := range ft.jobs {
			if tr.Host == a {
				mine = append(mine, tr.ID)
			}
		}
		ft.startOrder(mine)
	}
}

// 6. kill -9 the restic an agent runs: its lock stays in the repository,
// repository health shows it stale, the next backup still succeeds and an
// unlock job clears it.
func (f *chaosFleet) faultStaleLock(sz chaosScale) {
	t := f.t
	ft := f.fault(6, "stale restic lock: kill -9 the agent's restic mid-backup")
	defer ft.finish()
	a := f.agents[0]
	for range sz.reps {
		f.gate.close()
		killed := ft.backup(a, "failed")
		f.waitRunning(killed)
		if len(f.locks()) == 0 {
			t.Fatal("no lock in the repository while restic runs a backup")
		}
		pid := a.resticChild()
		if pid == 0 {
			t.Fatal("no restic child of the agent while a backup runs")
		}
		if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
			t.Fatal(err)
		}
		if j := f.srv.waitJob(killed, time.Minute); j.Status != "failed" {
			t.Fatalf("backup whose restic was killed: %s %q", j.Status, j.Error)
		}
		f.gate.open()
		if n := len(f.locks()); n != 1 {
			ft.violation("%d locks in the repository after restic was killed, want 1", n)
		}
		f.runJob(ft, a, "health", nil)
		if err := f.healthLocks(1, 1); err != nil {
			ft.violation("health after the kill: %v", err)
		}
		next := ft.backup(a, "succeeded")
		if j := f.srv.waitJob(next, 2*time.Minute); j.Status != "succeeded" {
			ft.violation("backup next to a stale lock: %s %q", j.Status, j.Error)
		}
		f.runJob(ft, a, "unlock", nil)
		f.runJob(ft, a, "health", nil)
		if err := f.healthLocks(0, 0); err != nil {
			ft.violation("health after unlock: %v", err)
		}
		if l := f.locks(); len(l) != 0 {
			ft.violation("unlock left %v in the repository", l)
		}
	}
	ft.check(2 * time.Minute)
}

// runJob runs a job of another kind to its end and tracks it.
func (f *chaosFleet) runJob(ft *fault, a *chaosAgent, kind string, args any) string {
	id := ft.other(a, kind, args, "succeeded")
	if j := f.srv.waitJob(id, 2*time.Minute); j.Status != "succeeded" {
		ft.violation("%s job %s: %s %q", kind, id, j.Status, j.Error)
	}
	return id
}

// healthLocks waits for the repository's health to show count locks, stale
// of them stale: the console applies a health job's report just after it
// records the job's end.
func (f *chaosFleet) healthLocks(count, stale int) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		h := f.repoHealth()
		if h.Locks.Count == count && h.Locks.Stale == stale {
			return nil
		}
		if time.Now().After(deadline) {
			return errorf("locks %+v, want %d of which %d stale", h.Locks, count, stale)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

func (f *chaosFleet) repoHealth() repoHealth {
	var r struct {
		Health *repoHealth `json:"health"`
	}
	f.srv.do("GET", "/api/v1/repos/"+f.repoID, nil, &r, 200)
	if r.Health == nil {
		return repoHealth{}
	}
	return *r.Health
}

// 2. kill -9 the agent while restic runs and other jobs wait behind it on
// the same repository; restart it. The interrupted job ends failed (and its
// orphaned restic must not finish the backup behind the console's back),
// the agent carries on.
func (f *chaosFleet) faultKillAgent(sz chaosScale) {
	ft := f.fault(2, "kill -9 an agent mid-backup, restart it")
	defer ft.finish()
	a := f.agents[0]
	locks0 := len(f.locks())
	for range sz.reps {
		f.gate.close()
		var ids []string
		for range sz.jobs {
			// One runs; the others wait on the agent for the repository.
			ids = append(ids, ft.backup(a, "failed", "succeeded"))
		}
		first := f.waitRunning(ids...).ID
		var behind []string
		for _, id := range ids {
			if id != first {
				behind = append(behind, id)
			}
		}
		pid := a.resticChild()
		a.ap.Proc.Kill()
		orphan := false
		deadline := time.Now().Add(15 * time.Second)
		for pidAlive(pid) && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if pidAlive(pid) {
			orphan = true
			ft.note("restic (pid %d) outlived its agent's kill -9", pid)
		}
		a.start()
		f.gate.open()
		j := f.srv.waitJob(first, 2*time.Minute)
		if j.Status != "failed" || !strings.Contains(j.Error, "restarted") {
			ft.violation("interrupted job %s: %s %q, want failed because the agent restarted", first, j.Status, j.Error)
		}
		if orphan {
			// Give the orphan the time to finish: check then sees whether it
			// made a snapshot for a job reported failed.
			deadline := time.Now().Add(30 * time.Second)
			for pidAlive(pid) && time.Now().Before(deadline) {
				time.Sleep(200 * time.Millisecond)
			}
		}
		for _, id := range behind {
			j := f.waitEnd(id, 2*time.Minute)
			ft.note("job %s, waiting on the agent behind the interrupted one, ended %s: %q", id, j.Status, j.Error)
		}
		ft.backup(a, "succeeded")
		ft.drain(2 * time.Minute)
	}
	ft.check(2 * time.Minute)
	if n := len(f.locks()) - locks0; n > 0 {
		ft.note("the killed agent's restic left %d lock(s) behind (removed by the next unlock)", n)
		f.runJob(ft, a, "unlock", nil)
	}
}

// 5. Cut the agent's TCP connection (through a proxy) while a backup
// streams progress, several times; a command is sent while it is down; the
// result itself travels through more cuts.
func (f *chaosFleet) faultCutConnection(sz chaosScale) {
	t := f.t
	ft := f.fault(5, "cut the agent's TCP connection mid-progress")
	defer ft.finish()
	a := f.agents[0]
	f.gate.close()
	first := ft.backup(a, "succeeded")
	j := f.waitRunning(first)
	eventually(t, 30*time.Second, "progress to flow", func() error {
		if s := f.srv.job(first).Seq(); s <= j.Seq()+1 {
			return errorf("progress seq %d", s)
		}
		return nil
	})
	cuts := 0
	for i := range sz.cuts {
		conns, seq := a.link.connections(), f.srv.job(first).Seq()
		cuts += a.link.cut()
		if i == 0 {
			ft.backup(a, "succeeded")
		}
		eventually(t, time.Minute, "the agent back through the proxy with progress", func() error {
			if a.link.connections() <= conns {
				return errorf("not reconnected")
			}
			if s := f.srv.job(first).Seq(); s <= seq {
				return errorf("progress seq %d, was %d before the cut", s, seq)
			}
			return nil
		})
	}
	f.gate.open()
	// The results travel through more cuts.
	end := time.Now().Add(3 * time.Second)
	for time.Now().Before(end) {
		cuts += a.link.cut()
		time.Sleep(300 * time.Millisecond)
	}
	ft.check(2 * time.Minute)
	f.srv.waitOnline(a.host.ID, true)
	ft.note("%d connections cut; the agent connected %d times through the proxy", cuts, a.link.connections())
}

// 4. Duplicate QoS-1 deliveries. A command reaches the agent twice (its
// persistent session delivers it, then the console re-sends it when the
// agent comes online); then, with the agent's own credential, a raw client
// republishes a result (identical, then contradicting), a progress report
// and a fire (twice).
func (f *chaosFleet) faultDuplicates(sz chaosScale) {
	t := f.t
	ft := f.fault(4, "duplicate QoS-1 deliveries (command, fire, progress, result)")
	defer ft.finish()
	a := f.agents[0]

	// A command delivered twice: the agent is offline when the jobs are
	// made; the first blocks at the gate so the others wait on the agent,
	// still queued for the console when the agent's status arrives.
	stop(t, a.ap.Proc)
	f.srv.waitOnline(a.host.ID, false)
	f.gate.close()
	var ids []string
	for range sz.jobs + 1 {
		ids = append(ids, ft.backup(a, "succeeded"))
	}
	a.start()
	f.waitRunning(ids...)
	eventually(t, time.Minute, "a command delivered twice", func() error {
		for _, id := range ids {
			if a.dupCommands(id) > 0 {
				return nil
			}
		}
		return errorf("no duplicate delivery seen by the agent yet")
	})
	f.gate.open()
	for _, id := range ids {
		f.srv.waitJob(id, 2*time.Minute)
	}
	ft.startOrder(ids)

	// A schedule the raw client can fire.
	r := f.srv.putSchedules(a.host.ID, []map[string]any{{
		"name": "chaos-yearly", "kind": "backup", "cron": "0 3 1 1 *", "timezone": "UTC", "enabled": true,
		"repo_id": f.repoID, "paths": []string{f.source()}, "tags": []string{"chaos-4-schedule"},
	}})
	f.srv.waitApplied(a.host.ID, r.Version)

	done := f.srv.job(ids[len(ids)-1])
	stop(t, a.ap.Proc)
	f.srv.waitOnline(a.host.ID, false)
	var cfg struct {
		Username string `yaml:"username"`
		Password string `yaml:"password"`
	}
	b, err := os.ReadFile(a.ap.Config)
	if err != nil {
		t.Fatal(err)
	}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	mc, _, err := dialMQTT(t, f.srv, a.host.ID, cfg.Username, cfg.Password, nil)
	if err != nil {
		t.Fatalf("raw client with the agent's credential: %v", err)
	}
	pub := func(topic string, v any) {
		t.Helper()
		p, err := json.Marshal(v)
		if err != nil {
			t.Fatal(err)
		}
		if code := mc.publish(t, topic, p, false); code != 0 {
			ft.violation("republished %s: reason %#x, want 0 (accepted, idempotent)", topic, code)
		}
		ft.dupDel++
	}
	code := 0
	if done.ExitCode != nil {
		code = *done.ExitCode
	}
	same := wire.Result{V: 1, JobID: done.ID, Status: done.Status, ExitCode: code, StartedAt: done.StartedAt, EndedAt: done.EndedAt, SnapshotID: done.SnapshotID}
	pub(wire.ResultTopic(a.host.ID, done.ID), same)
	pub(wire.ResultTopic(a.host.ID, done.ID), same)
	contra := same
	contra.Status, contra.SnapshotID, contra.ExitCode, contra.Error = "failed", "", 1, "a late contradicting duplicate"
	contra.EndedAt = time.Now().UTC()
	pub(wire.ResultTopic(a.host.ID, done.ID), contra)
	pub(wire.ProgressTopic(a.host.ID, done.ID), wire.Progress{V: 1, JobID: done.ID, Seq: 1, Percent: 50})
	// The schedule's last real time (the console refuses any other).
	scheduled := time.Date(time.Now().UTC().Year(), 1, 1, 3, 0, 0, 0, time.UTC)
	if scheduled.After(time.Now()) {
		scheduled = scheduled.AddDate(-1, 0, 0)
	}
	fire := wire.Fire{V: 1, FireID: "chaos-fire-1", ScheduleID: r.Schedules[0].ID, ScheduleVersion: r.Version, ScheduledAt: scheduled, FiredAt: time.Now().UTC()}
	pub(wire.FiresTopic(a.host.ID), fire)
	fire.FiredAt = time.Now().UTC()
	pub(wire.FiresTopic(a.host.ID), fire)
	_ = mc.c.Disconnect(&paho.Disconnect{ReasonCode: 0})

	if j := f.srv.job(done.ID); j.Status != done.Status || j.SnapshotID != done.SnapshotID || !j.EndedAt.Equal(done.EndedAt) {
		ft.violation("job %s was %s/%s, after duplicate results %s/%s", done.ID, done.Status, done.SnapshotID, j.Status, j.SnapshotID)
	}
	var fired []harness.Job
	for _, j := range f.srv.jobs() {
		if j.ScheduleID == r.Schedules[0].ID {
			fired = append(fired, j)
		}
	}
	if len(fired) != 1 {
		ft.violation("a fire delivered twice made %d jobs, want 1", len(fired))
	}
	for _, j := range fired {
		ft.track(j.ID, "chaos-4-schedule", a, "succeeded")
	}
	a.start()
	ft.check(2 * time.Minute)
}
