package storage

import (
	"fmt"
	"sync"
	"testing"
	"time"

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
