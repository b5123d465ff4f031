package fleet

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A fire made under version N that arrives after the schedules were edited
// to N+1 runs once if its schedule survived the edit, and not at all if the
// edit removed or disabled it.
func TestFireAcrossAnEdit(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	mk := func(id, name string, enabled bool) schedules.Schedule {
		return schedules.Schedule{ID: id, Name: name, Kind: wire.JobBackup, Cron: "0 2 * * *", Enabled: enabled, RepoID: "repo-1", Paths: []string{"/etc"}}
	}
	set := func(s ...schedules.Schedule) {
		if _, err := st.UpdateSchedules("host-a", func(hs *storage.HostSchedules) error {
			hs.Version++
			hs.Schedules = s
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	set(mk("keep", "keep", true), mk("drop", "drop", true), mk("pause", "pause", true)) // v1
	set(mk("keep", "keep (renamed)", true), mk("pause", "pause", false))                // v2

	at := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	fire := func(id, sched string, version int64) error {
		b, err := wire.Encode(&wire.Fire{FireID: id, ScheduleID: sched, ScheduleVersion: version, ScheduledAt: at, FiredAt: at})
		if err != nil {
			t.Fatal(err)
		}
		return f.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindFires}, b)
	}
	if err := fire("f1", "keep", 1); err != nil {
		t.Fatalf("fire of a surviving schedule from the old version: %v", err)
	}
	if err := fire("f1", "keep", 1); err != nil { // redelivered after the edit
		t.Fatal(err)
	}
	if err := fire("f2", "drop", 1); !errors.Is(err, broker.ErrRejected) {
		t.Fatalf("fire of a removed schedule: %v, want refused", err)
	}
	if err := fire("f3", "pause", 1); !errors.Is(err, broker.ErrRejected) {
		t.Fatalf("fire of a disabled schedule: %v, want refused", err)
	}
	if err := fire("f4", "keep", 9); !errors.Is(err, broker.ErrRejected) {
		t.Fatalf("fire of a version never published: %v, want refused", err)
	}
	jobs, _, _ := st.ListJobs(storage.JobQuery{HostID: "host-a"})
	if len(jobs) != 1 || jobs[0].ScheduleID != "keep" || jobs[0].ActorKind != "schedule" || jobs[0].Actor != "keep (renamed)" {
		t.Fatalf("jobs = %+v, want one for keep built from the current record", jobs)
	}
	if got := f.inst.(*fires).count("refused"); got != 3 {
		t.Errorf("%d fires counted as refused, want 3", got)
	}
	if got := f.inst.(*fires).count("duplicate"); got != 1 {
		t.Errorf("%d duplicates counted, want 1", got)
	}
}

func TestReportedIgnoresStaleVersions(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	for range 3 {
		if _, err := st.UpdateSchedules("host-a", func(hs *storage.HostSchedules) error { hs.Version++; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	report := func(v int64) {
		b, _ := wire.Encode(&wire.SchedulesReported{Version: v, AppliedAt: time.Now()})
		if err := f.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindSchedulesReported}, b); err != nil {
			t.Fatal(err)
		}
	}
	report(3)
	report(2) // late redelivery of an older report
	report(7) // never published
	hs, _ := st.GetSchedules("host-a")
	if hs.AppliedVersion != 3 {
		t.Fatalf("applied version %d, want 3", hs.AppliedVersion)
	}
	if SchedulePending(hs, true, time.Now().Add(time.Hour)) {
		t.Error("an applied host is flagged pending")
	}
	hs.Version = 4
	if !SchedulePending(hs, true, hs.UpdatedAt.Add(applyGrace+time.Second)) || SchedulePending(hs, false, hs.UpdatedAt.Add(time.Hour)) {
		t.Error("pending flag wrong: online hosts late to apply are flagged, offline ones are not")
	}
}

// A compromised agent cannot make a schedule run more often than its cron:
// a fire must be for one of the cron's times, not in the future, and not
// older than the last one accepted; a constant-delay schedule's fires are
// at least half its delay apart.
func TestForgedFiresAreRefused(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	seedRepo(t, st, "repo-1")
	if _, err := st.UpdateSchedules("host-a", func(hs *storage.HostSchedules) error {
		hs.Version = 1
		hs.Schedules = []schedules.Schedule{
			{ID: "forget", Name: "forget", Kind: wire.JobForget, Cron: "0 3 * * *", Enabled: true, RepoID: "repo-1", Retention: &wire.Retention{KeepDaily: 7}},
			{ID: "often", Name: "often", Kind: wire.JobCheck, Cron: "@every 6h", Enabled: true, RepoID: "repo-1"},
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	fire := func(id, sched string, at time.Time) error {
		b := mustEncode(t, &wire.Fire{FireID: id, ScheduleID: sched, ScheduleVersion: 1, ScheduledAt: at, FiredAt: at})
		return f.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindFires}, b)
	}
	day := time.Now().UTC().Truncate(24 * time.Hour).Add(-48 * time.Hour)
	tick := day.Add(3 * time.Hour) // 03:00 two days ago
	for _, tc := range []struct {
		name  string
		sched string
		at    time.Time
		ok    bool
	}{
		{"not a cron time", "forget", tick.Add(17 * time.Minute), false},
		{"a cron time", "forget", tick, true},
		{"the same time again (a redelivery)", "forget", tick, true},
		{"an older cron time", "forget", tick.Add(-24 * time.Hour), false},
		{"a cron time in the future", "forget", tick.Add(72 * time.Hour), false},
		{"the next cron time", "forget", tick.Add(24 * time.Hour), true},
		{"a constant-delay schedule", "often", tick, true},
		{"too soon after it", "often", tick.Add(time.Hour), false},
		{"a delay later", "often", tick.Add(6 * time.Hour), true},
	} {
		err := fire(fmt.Sprintf("fire-%d", tc.at.Unix()), tc.sched, tc.at)
		if tc.ok && err != nil || !tc.ok && !errors.Is(err, broker.ErrRejected) {
			t.Errorf("%s (%s): %v, want accepted=%v", tc.name, tc.at, err, tc.ok)
		}
	}
	jobs, _, _ := st.ListJobs(storage.JobQuery{HostID: "host-a"})
	if len(jobs) != 4 {
		t.Errorf("%d jobs from the fires, want 4 (two forgets, two checks)", len(jobs))
	}
}

// A fire takes the bandwidth limits in force at its scheduled time, read in
// the schedule's time zone: a window's inside it, the schedule's own outside.
func TestFireTakesTheLimitsOfItsWindow(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	seedRepo(t, st, "repo-1")
	zero := 0
	if _, err := st.UpdateSchedules("host-a", func(hs *storage.HostSchedules) error {
		hs.Version = 1
		hs.Schedules = []schedules.Schedule{{ID: "b", Name: "b", Kind: wire.JobBackup, Cron: "0 * * * *", Timezone: "Europe/Berlin",
			Enabled: true, RepoID: "repo-1", Paths: []string{"/etc"}, JitterS: &zero, LimitDownloadKiB: 9,
			LimitWindows: []schedules.LimitWindow{{From: "08:00", To: "18:00", LimitUploadKiB: 5120}}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	y := time.Now().In(berlin).AddDate(0, 0, -1)
	for i, at := range []time.Time{
		time.Date(y.Year(), y.Month(), y.Day(), 9, 0, 0, 0, berlin),  // inside
		time.Date(y.Year(), y.Month(), y.Day(), 20, 0, 0, 0, berlin), // outside
	} {
		b := mustEncode(t, &wire.Fire{FireID: fmt.Sprint("f", i), ScheduleID: "b", ScheduleVersion: 1, ScheduledAt: at.UTC(), FiredAt: at.UTC()})
		if err := f.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindFires}, b); err != nil {
			t.Fatal(err)
		}
	}
	jobs, _, _ := st.ListJobs(storage.JobQuery{HostID: "host-a"})
	got := map[string]bool{}
	for _, j := range jobs {
		got[string(j.Args)] = true
	}
	for _, want := range []string{
		`{"paths":["/etc"],"limit_upload_kib":5120}`,
		`{"paths":["/etc"],"limit_download_kib":9}`,
	} {
		if !got[want] {
			t.Errorf("no job with args %s; jobs %v", want, got)
		}
	}
}

type parallelRecorder struct {
	teststore.Recorder
	n int
}

func (p *parallelRecorder) PublishParallelism() int { return p.n }

// A bulk publish uses 8 workers with the embedded broker (an inline call)
// and what an external broker's connection can keep outstanding.
func TestPublishWorkers(t *testing.T) {
	var _ ParallelPublisher = (*broker.External)(nil)
	st := teststore.Open(t)
	for _, c := range []struct {
		pub  Publisher
		want int
	}{{&teststore.Recorder{}, 8}, {&parallelRecorder{n: 20}, 20}, {&parallelRecorder{}, 8}} {
		f, err := New(Options{Store: st, Publisher: c.pub})
		if err != nil {
			t.Fatal(err)
		}
		if got := f.publishWorkers(); got != c.want {
			t.Errorf("%T: %d workers, want %d", c.pub, got, c.want)
		}
		f.Close()
	}
}
