package storage

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/restic-manager/restic-manager/schedules"
)

func TestSchedulesVersionAndCAS(t *testing.T) {
	s, _ := openTest(t)
	if _, err := s.UpdateSchedules("nohost", func(*HostSchedules) error { return nil }); err == nil {
		t.Fatal("schedules stored for an unknown host")
	}
	if err := s.CreateHost(Host{ID: "h1", Name: "h1"}); err != nil {
		t.Fatal(err)
	}
	hs, err := s.GetSchedules("h1")
	if err != nil || hs.Version != 0 || len(hs.Schedules) != 0 {
		t.Fatalf("empty set: %+v %v", hs, err)
	}
	var wg sync.WaitGroup
	for i := range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := s.UpdateSchedules("h1", func(hs *HostSchedules) error {
				hs.Version++
				hs.Schedules = append(hs.Schedules, schedules.Schedule{ID: "s", Name: string(rune('a' + i))})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	hs, _ = s.GetSchedules("h1")
	if hs.Version != 20 || len(hs.Schedules) != 20 {
		t.Fatalf("after 20 concurrent bumps: version %d, %d schedules", hs.Version, len(hs.Schedules))
	}
}

func TestCreateScheduledJobOnce(t *testing.T) {
	s, _ := openTest(t)
	at := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	ids := map[string]bool{}
	for i := range 10 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			j := Job{ID: "job-" + string(rune('a'+i)), HostID: "h1", Kind: "backup", ScheduleID: "s1", Status: JobQueued, CreatedAt: time.Now()}
			got, ok, err := s.CreateScheduledJob(j, at)
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			defer mu.Unlock()
			if ok {
				created++
			}
			ids[got.ID] = true
		}()
	}
	wg.Wait()
	if created != 1 || len(ids) != 1 {
		t.Fatalf("%d created, %d distinct jobs returned; want one of each", created, len(ids))
	}
	jobs, _, _ := s.ListJobs(JobQuery{HostID: "h1"})
	if len(jobs) != 1 {
		t.Fatalf("%d jobs stored", len(jobs))
	}
	// Another window of the same schedule is another job.
	if _, ok, err := s.CreateScheduledJob(Job{ID: "job-z", HostID: "h1", ScheduleID: "s1", Status: JobQueued}, at.Add(time.Hour)); err != nil || !ok {
		t.Fatalf("next window: %v %v", ok, err)
	}
}

func TestLatestFire(t *testing.T) {
	s, _ := openTest(t)
	if _, ok, err := s.LatestFire("host-a", "sch-1"); err != nil || ok {
		t.Fatalf("no fire yet: %v %v", ok, err)
	}
	base := time.Date(2026, 3, 1, 2, 0, 0, 0, time.UTC)
	for i, d := range []int{2, 0, 1} {
		at := base.Add(time.Duration(d) * 24 * time.Hour)
		j := Job{ID: fmt.Sprintf("job-%d", i), HostID: "host-a", RepoID: "repo-1", ScheduleID: "sch-1", Kind: "backup", Status: JobQueued, CreatedAt: at}
		if _, _, err := s.CreateScheduledJob(j, at); err != nil {
			t.Fatal(err)
		}
	}
	// Another schedule whose ID extends this one's is not mixed in.
	if _, _, err := s.CreateScheduledJob(Job{ID: "job-x", HostID: "host-a", RepoID: "repo-1", ScheduleID: "sch-10", Kind: "backup", Status: JobQueued, CreatedAt: base}, base.Add(240*time.Hour)); err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.LatestFire("host-a", "sch-1")
	if err != nil || !ok || !got.Equal(base.Add(48*time.Hour)) {
		t.Fatalf("latest fire %v %v %v, want %v", got, ok, err, base.Add(48*time.Hour))
	}
}

// The applied state is its own key: an agent's report neither rewrites nor
// loses the set, the set's writers keep it, a record from before the split
// keeps its applied state, and a deleted host leaves none behind.
func TestAppliedStateKey(t *testing.T) {
	s, _ := openTest(t)
	for _, id := range []string{"h1", "old"} {
		if err := s.CreateHost(Host{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.UpdateApplied("nohost", func(int64, *Applied) error { return nil }); err == nil {
		t.Fatal("applied state stored for an unknown host")
	}
	if _, err := s.UpdateSchedules("h1", func(hs *HostSchedules) error {
		hs.Version = 3
		hs.Schedules = []schedules.Schedule{{ID: "s1", Name: "nightly"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 7, 4, 0, 0, 0, time.UTC)
	var sawDesired int64
	if err := s.UpdateApplied("h1", func(desired int64, a *Applied) error {
		sawDesired = desired
		a.Version, a.At, a.Skipped = 3, at, []SkippedSchedule{{ID: "s1", Reason: "no such source"}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if sawDesired != 3 {
		t.Fatalf("UpdateApplied saw desired version %d, want 3", sawDesired)
	}
	hs, err := s.GetSchedules("h1")
	if err != nil || hs.Version != 3 || hs.AppliedVersion != 3 || !hs.AppliedAt.Equal(at) || len(hs.Skipped) != 1 || len(hs.Schedules) != 1 {
		t.Fatalf("after the report: %+v %v", hs, err)
	}
	// A writer of the set keeps the applied state.
	if _, err := s.UpdateSchedules("h1", func(hs *HostSchedules) error { hs.Version = 4; return nil }); err != nil {
		t.Fatal(err)
	}
	if hs, _ = s.GetSchedules("h1"); hs.Version != 4 || hs.AppliedVersion != 3 || len(hs.Skipped) != 1 {
		t.Fatalf("after an edit of the set: %+v", hs)
	}
	if _, err := s.UpdateSchedulesMany([]string{"h1"}, func(hs *HostSchedules, _ Host) (bool, error) { hs.Version = 5; return true, nil }, nil); err != nil {
		t.Fatal(err)
	}
	var each []HostSchedules
	if err := s.EachSchedules(t.Context(), func(hs HostSchedules) { each = append(each, hs) }); err != nil {
		t.Fatal(err)
	}
	if len(each) != 1 || each[0].Version != 5 || each[0].AppliedVersion != 3 || !each[0].AppliedAt.Equal(at) {
		t.Fatalf("EachSchedules after a batched edit: %+v", each)
	}
	// A record written before the split: the applied state inside the set.
	legacy := HostSchedules{HostID: "old", Version: 7, AppliedVersion: 6, AppliedAt: at, Schedules: []schedules.Schedule{{ID: "s9"}}}
	if err := s.db.Update(func(txn *badger.Txn) error { return setJSON(txn, schedKey("old"), legacy) }); err != nil {
		t.Fatal(err)
	}
	if hs, _ = s.GetSchedules("old"); hs.Version != 7 || hs.AppliedVersion != 6 || !hs.AppliedAt.Equal(at) {
		t.Fatalf("old record read: %+v", hs)
	}
	if err := s.UpdateApplied("old", func(desired int64, a *Applied) error {
		if desired != 7 || a.Version != 6 {
			return fmt.Errorf("old record as UpdateApplied sees it: desired %d, applied %d", desired, a.Version)
		}
		a.Version = 7
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if hs, _ = s.GetSchedules("old"); hs.Version != 7 || hs.AppliedVersion != 7 || len(hs.Schedules) != 1 {
		t.Fatalf("old record after a report: %+v", hs)
	}
	if err := s.DeleteHost("h1"); err != nil {
		t.Fatal(err)
	}
	if err := s.db.View(func(txn *badger.Txn) error { return present(txn, appliedKey("h1")) }); err == nil {
		t.Fatal("a deleted host's applied state is left behind")
	}
}
