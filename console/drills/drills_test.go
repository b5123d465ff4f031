package drills

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

type rig struct {
	st *storage.Store
	f  *fleet.Fleet
	d  *Drills
}

// newRig: hosts web (reports its host name and a hook), drill (a drill
// host, bound), stranger (enrolled, not bound); repository repo-1.
func newRig(t *testing.T) rig {
	t.Helper()
	st := teststore.Open(t)
	f, err := fleet.New(fleet.Options{Store: st, Publisher: &teststore.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	d := New(f, nil)
	for _, id := range []string{"web", "drillhost", "stranger"} {
		teststore.EnrolledHost(t, st, id)
	}
	if _, err := st.UpdateHost("web", func(h *storage.Host) error { h.Hostname = "web.example"; h.Hooks = []string{"pg-load"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"web", "drillhost"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	return rig{st, f, d}
}

func (r rig) drill(host, args string) (storage.Job, error) {
	return r.f.CreateJob(fleet.JobRequest{HostID: host, RepoID: "repo-1", Kind: wire.JobDrill, Args: json.RawMessage(args), ActorKind: "user", Actor: "u"})
}

func drillArgs(t *testing.T, j storage.Job) wire.DrillArgs {
	t.Helper()
	var a wire.DrillArgs
	if err := json.Unmarshal(j.Args, &a); err != nil {
		t.Fatal(err)
	}
	return a
}

// A drill carries the proven host and its restic host name, whatever the
// caller sent; with a target it runs there and still proves the first
// host; a target that is not bound, a probe the running host lacks and a
// host without a host name (and no snapshot) are refused with reasons.
func TestPrepareDrill(t *testing.T) {
	r := newRig(t)
	j, err := r.drill("web", `{"host_id":"stranger","hostname":"evil","probe":"pg-load"}`)
	if err != nil {
		t.Fatal(err)
	}
	if a := drillArgs(t, j); j.HostID != "web" || a.HostID != "web" || a.Hostname != "web.example" {
		t.Errorf("job on %s, args %+v", j.HostID, a)
	}

	j, err = r.drill("web", `{"target_host_id":"drillhost","sample_files":5}`)
	if err != nil {
		t.Fatal(err)
	}
	if a := drillArgs(t, j); j.HostID != "drillhost" || a.HostID != "web" || a.Hostname != "web.example" || a.TargetHostID != "drillhost" || a.SampleFiles != 5 {
		t.Errorf("targeted: job on %s, args %+v", j.HostID, a)
	}

	for _, tc := range []struct{ host, args, want string }{
		{"web", `{"target_host_id":"stranger"}`, "host stranger is not bound to repository"},
		{"web", `{"target_host_id":"nope"}`, `drill target host "nope" does not exist`},
		{"web", `{"target_host_id":"drillhost","probe":"pg-load"}`, `host drillhost has no hook "pg-load"`},
		{"drillhost", `{}`, "has not reported its host name yet"},
	} {
		_, err := r.drill(tc.host, tc.args)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s %s: %v, want %q", tc.host, tc.args, err, tc.want)
			continue
		}
		if _, ok := input.As(err); !ok {
			t.Errorf("%s %s: %v is not an input error", tc.host, tc.args, err)
		}
	}
	// With a snapshot given, no host name is needed.
	if _, err := r.drill("drillhost", `{"snapshot_id":"0123456789abcdef"}`); err != nil {
		t.Errorf("drill of a given snapshot: %v", err)
	}
}

// A drill schedule's fire makes a drill with the host's ID and name.
func TestScheduledDrillCarriesTheHost(t *testing.T) {
	r := newRig(t)
	zero := 0
	hs, err := r.f.PutSchedules("web", []schedules.Schedule{{Name: "weekly drill", Kind: wire.JobDrill, Cron: "0 3 * * 0", Enabled: true, RepoID: "repo-1", SampleFiles: 7, JitterS: &zero}}, false)
	if err != nil {
		t.Fatal(err)
	}
	runs, _ := schedules.EntryNextRuns("web", hs.Schedules[0].Entry(), time.Now().Add(-15*24*time.Hour), 1)
	b, err := wire.Encode(&wire.Fire{FireID: "fire-1", ScheduleID: hs.Schedules[0].ID, ScheduleVersion: hs.Version, ScheduledAt: runs[0], FiredAt: runs[0]})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.f.Ingest(context.Background(), "web", wire.Topic{Host: "web", Kind: wire.KindFires}, b); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := r.st.ListJobs(storage.JobQuery{HostID: "web"})
	if err != nil || len(jobs) != 1 {
		t.Fatalf("%d jobs, %v", len(jobs), err)
	}
	if a := drillArgs(t, jobs[0]); a.HostID != "web" || a.Hostname != "web.example" || a.SampleFiles != 7 {
		t.Errorf("fired drill args %+v", a)
	}
}

func (r rig) finish(t *testing.T, j storage.Job, status string, out *wire.DrillOutput, at time.Time) {
	t.Helper()
	res := wire.Result{JobID: j.ID, Status: status, EndedAt: at}
	if status == wire.StatusFailed {
		res.Error, res.ExitCode = "restic: pack damaged", 1
	}
	if out != nil {
		res.Output, _ = json.Marshal(out)
	}
	b, err := wire.Encode(&res)
	if err != nil {
		t.Fatal(err)
	}
	for range 2 { // the second is a redelivery
		if err := r.f.Ingest(context.Background(), j.HostID, wire.Topic{Host: j.HostID, Kind: wire.KindResult, Job: j.ID}, b); err != nil {
			t.Fatal(err)
		}
	}
}

func waitHost(t *testing.T, st *storage.Store, id string, ok func(storage.Host) bool) storage.Host {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		h, err := st.GetHost(id)
		if err == nil && ok(h) {
			return h
		}
		if time.Now().After(deadline) {
			t.Fatalf("host %s: %+v (%v)", id, h.LastDrill, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A drill's end is recorded on the host it proved (even when it ran on
// another): the last drill with its figures, the proven time from a
// success only, and one history point per drill however often the result
// comes.
func TestRecordOnTheProvenHost(t *testing.T) {
	r := newRig(t)
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	j, err := r.drill("web", `{"target_host_id":"drillhost"}`)
	if err != nil {
		t.Fatal(err)
	}
	r.finish(t, j, wire.StatusSucceeded, &wire.DrillOutput{SnapshotID: "0123456789abcdef", FilesChecked: 100, BytesChecked: 1 << 20,
		RestoreBytesPerS: 50 << 20, EstimatedFullRestoreS: 1200, Sample: []string{"/etc/hosts"}}, t0)
	h := waitHost(t, r.st, "web", func(h storage.Host) bool { return h.LastDrill != nil })
	if d := h.LastDrill; d.JobID != j.ID || d.Status != "succeeded" || d.RanOn != "drillhost" || d.FilesChecked != 100 || d.EstimatedFullRestoreS != 1200 || !h.ProvenRestorableAt.Equal(t0) {
		t.Errorf("last drill %+v, proven %v", d, h.ProvenRestorableAt)
	}
	if dh, _ := r.st.GetHost("drillhost"); dh.LastDrill != nil {
		t.Errorf("the drill host got the drill: %+v", dh.LastDrill)
	}

	// A failure: last drill failed, still proven at t0; mismatches counted.
	j2, _ := r.drill("web", `{}`)
	r.finish(t, j2, wire.StatusFailed, &wire.DrillOutput{FilesChecked: 10, Mismatches: []wire.DrillMismatch{{Path: "/a", Reason: "sha256 differs"}}}, t0.Add(time.Minute))
	h = waitHost(t, r.st, "web", func(h storage.Host) bool { return h.LastDrill.JobID == j2.ID })
	if h.LastDrill.Status != "failed" || h.LastDrill.Mismatches != 1 || !h.ProvenRestorableAt.Equal(t0) || Proven(h) != ProvenFailed {
		t.Errorf("after a failure: %+v proven %v (%s)", h.LastDrill, h.ProvenRestorableAt, Proven(h))
	}

	// An agent's absurd figures are not believed.
	j3, _ := r.drill("web", `{}`)
	r.finish(t, j3, wire.StatusSucceeded, &wire.DrillOutput{RestoreBytesPerS: 1e30, EstimatedFullRestoreS: 1e30, FilesChecked: 3}, t0.Add(2*time.Minute))
	h = waitHost(t, r.st, "web", func(h storage.Host) bool { return h.LastDrill.JobID == j3.ID })
	if h.LastDrill.RestoreBytesPerS != 0 || h.LastDrill.EstimatedFullRestoreS != 0 || Proven(h) != ProvenOK {
		t.Errorf("absurd figures kept: %+v", h.LastDrill)
	}
	var pts []storage.DrillPoint
	for deadline := time.Now().Add(10 * time.Second); len(pts) < 3 && time.Now().Before(deadline); time.Sleep(5 * time.Millisecond) {
		pts, err = r.st.DrillHistory("web")
	}
	if err != nil || len(pts) != 3 || pts[0].JobID != j.ID || pts[0].RestoreBytesPerS != 50<<20 || pts[1].Mismatches != 1 {
		t.Errorf("history %+v (%v)", pts, err)
	}
}

func TestFailureMessageNamesTheFirstPaths(t *testing.T) {
	o := Outcome{JobID: "job-1", HostID: "web", RanOn: "web", Error: "3 files differ", Output: &wire.DrillOutput{}}
	for _, p := range []string{"/a", "/b", "/c", "/d", "/e", "/f", "/g"} {
		o.Output.Mismatches = append(o.Output.Mismatches, wire.DrillMismatch{Path: p, Reason: "differs"})
	}
	msg := FailureMessage(o, "web-1")
	for _, want := range []string{"restore drill job-1 of web-1 failed: 3 files differ", "7 mismatching: /a (differs), /b (differs)", "/e (differs) and 2 more"} {
		if !strings.Contains(msg, want) {
			t.Errorf("%q lacks %q", msg, want)
		}
	}
	if strings.Contains(msg, "/f") {
		t.Errorf("%q names more than %d paths", msg, maxNamed)
	}
}

// A host with a weekly drill is overdue two weeks after its last proven
// drill, not before; one without a drill schedule never is; a host never
// proven counts from when its schedules changed.
func TestOverdue(t *testing.T) {
	now := time.Date(2026, 6, 10, 12, 0, 0, 0, time.UTC)
	zero := 0
	h := storage.Host{ID: "web", Name: "web-1", Enrolled: true, CreatedAt: now.Add(-100 * 24 * time.Hour)}
	hs := storage.HostSchedules{HostID: "web", UpdatedAt: now.Add(-30 * 24 * time.Hour), Schedules: []schedules.Schedule{
		{ID: "s1", Name: "nightly", Kind: wire.JobBackup, Cron: "@daily", Enabled: true, RepoID: "r"},
	}}
	if _, over := Overdue(h, hs, now); over {
		t.Error("no drill schedule, yet overdue")
	}
	hs.Policy = []schedules.Schedule{{ID: "p1", Name: "drill", Kind: wire.JobDrill, Cron: "0 3 * * 0", Enabled: true, RepoID: "r", JitterS: &zero, PolicyID: "pol"}}
	if got := Interval(h, hs, now); got != 7*24*time.Hour {
		t.Fatalf("interval %s", got)
	}
	msg, over := Overdue(h, hs, now)
	if !over || !strings.Contains(msg, "web-1 has never been proven restorable") {
		t.Errorf("never proven, cadence a month old: %v %q", over, msg)
	}
	h.ProvenRestorableAt = now.Add(-13 * 24 * time.Hour)
	if _, over := Overdue(h, hs, now); over {
		t.Error("proven 13 days ago with a weekly drill: overdue")
	}
	msg, over = Overdue(h, hs, now.Add(2*24*time.Hour))
	if !over || !strings.Contains(msg, "past twice its drill interval of 168h0m0s") {
		t.Errorf("15 days: %v %q", over, msg)
	}
	hs.Policy[0].Enabled = false
	if _, over := Overdue(h, hs, now.Add(60*24*time.Hour)); over {
		t.Error("a disabled drill schedule makes a cadence")
	}
}
