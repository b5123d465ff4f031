package storage

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
)

// seedJobs creates n jobs round-robin over hosts h0..h{hosts-1}, job i created
// at ts(i), status succeeded for even i and failed for odd i.
func seedJobs(t *testing.T, s *Store, n, hosts int) []Job {
	t.Helper()
	var jobs []Job
	for i := range n {
		j := Job{
			ID:        fmt.Sprintf("j%03d", i),
			HostID:    fmt.Sprintf("h%d", i%hosts),
			Kind:      "backup",
			Status:    []string{JobSucceeded, JobFailed}[i%2],
			CreatedAt: ts(i),
		}
		if err := s.CreateJob(j); err != nil {
			t.Fatal(err)
		}
		jobs = append(jobs, j)
	}
	return jobs
}

// listAll pages through q and fails on duplicates.
func listAll(t *testing.T, s *Store, q JobQuery) []Job {
	t.Helper()
	var all []Job
	seen := map[string]bool{}
	for page := 0; ; page++ {
		if page > 100 {
			t.Fatal("pagination does not terminate")
		}
		jobs, next, err := s.ListJobs(q)
		if err != nil {
			t.Fatal(err)
		}
		if q.Limit > 0 && len(jobs) > q.Limit {
			t.Fatalf("page of %d jobs exceeds limit %d", len(jobs), q.Limit)
		}
		for _, j := range jobs {
			if seen[j.ID] {
				t.Fatalf("job %s returned twice", j.ID)
			}
			seen[j.ID] = true
		}
		all = append(all, jobs...)
		if next == "" {
			return all
		}
		q.Cursor = next
	}
}

// expect returns the seeded jobs matching host and status, newest first.
func expect(jobs []Job, host, status string) []string {
	var ids []string
	for i := len(jobs) - 1; i >= 0; i-- {
		j := jobs[i]
		if (host == "" || j.HostID == host) && (status == "" || j.Status == status) {
			ids = append(ids, j.ID)
		}
	}
	return ids
}

func jobIDs(jobs []Job) []string {
	var ids []string
	for _, j := range jobs {
		ids = append(ids, j.ID)
	}
	return ids
}

func sameIDs(t *testing.T, what string, got, want []string) {
	t.Helper()
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Errorf("%s:\n got %v\nwant %v", what, got, want)
	}
}

func TestListJobs(t *testing.T) {
	s, _ := openTest(t)
	seeded := seedJobs(t, s, 30, 3)

	for _, host := range []string{"h0", "h1", "h2", ""} {
		// One page with the default limit.
		jobs, next, err := s.ListJobs(JobQuery{HostID: host})
		if err != nil {
			t.Fatal(err)
		}
		if next != "" {
			t.Errorf("host %q: unexpected next cursor for a complete page", host)
		}
		sameIDs(t, "host "+host, jobIDs(jobs), expect(seeded, host, ""))

		// Paginated, with page sizes that do and do not divide evenly.
		for _, limit := range []int{1, 3, 4, 10} {
			got := listAll(t, s, JobQuery{HostID: host, Limit: limit})
			sameIDs(t, fmt.Sprintf("host %q limit %d", host, limit), jobIDs(got), expect(seeded, host, ""))
		}
		for _, status := range []string{JobSucceeded, JobFailed, JobRunning} {
			got := listAll(t, s, JobQuery{HostID: host, Status: status, Limit: 2})
			sameIDs(t, fmt.Sprintf("host %q status %s", host, status), jobIDs(got), expect(seeded, host, status))
		}
	}

	// A page exactly as large as the remainder has no next cursor.
	if _, next, _ := s.ListJobs(JobQuery{HostID: "h0", Limit: 10}); next != "" {
		t.Error("next cursor after the last job")
	}
	_, next, _ := s.ListJobs(JobQuery{HostID: "h0", Limit: 9})
	if next == "" {
		t.Fatal("no next cursor with one job left")
	}

	// Cursors are bound to their index.
	_, _, err := s.ListJobs(JobQuery{HostID: "h1", Cursor: next})
	wantErr(t, err, ErrInvalid)
	_, _, err = s.ListJobs(JobQuery{Cursor: "not base64!"})
	wantErr(t, err, ErrInvalid)
	_, _, err = s.ListJobs(JobQuery{HostID: "h0/x"})
	wantErr(t, err, ErrInvalid)

	// Unknown host: empty, not nil, no error.
	jobs, next, err := s.ListJobs(JobQuery{HostID: "h9"})
	if err != nil || jobs == nil || len(jobs) != 0 || next != "" {
		t.Fatalf("unknown host: %v %q %v", jobs, next, err)
	}

	// Status changes are visible to the filter without touching the index.
	if err := s.CreateJob(Job{ID: "j100", HostID: "h0", Status: JobQueued, CreatedAt: ts(100)}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.UpdateJob("j100", func(j *Job) error { j.Status = JobRunning; return nil }); err != nil {
		t.Fatal(err)
	}
	jobs, _, err = s.ListJobs(JobQuery{HostID: "h0", Status: JobRunning})
	if err != nil || len(jobs) != 1 || jobs[0].ID != "j100" {
		t.Fatalf("running jobs of h0 = %v, %v", jobIDs(jobs), err)
	}
}

// TestListJobsSameTime: jobs created in the same nanosecond order by ID and
// page without loss.
func TestListJobsSameTime(t *testing.T) {
	s, _ := openTest(t)
	for _, id := range []string{"b", "a", "c"} {
		if err := s.CreateJob(Job{ID: id, HostID: "h", CreatedAt: ts(0)}); err != nil {
			t.Fatal(err)
		}
	}
	got := listAll(t, s, JobQuery{HostID: "h", Limit: 1})
	sameIDs(t, "same time", jobIDs(got), []string{"c", "b", "a"})
}

func TestUpdateJobConcurrent(t *testing.T) {
	s, _ := openTest(t)
	if err := s.CreateJob(Job{ID: "j", HostID: "h", Status: JobRunning, CreatedAt: ts(0)}); err != nil {
		t.Fatal(err)
	}
	const workers, each = 20, 5
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for range each {
				_, err := s.UpdateJob("j", func(j *Job) error {
					if j.Progress == nil {
						j.Progress = &Progress{}
					}
					j.Progress.Seq++
					return nil
				})
				if err != nil {
					t.Error(err)
				}
			}
		})
	}
	wg.Wait()
	j, err := s.GetJob("j")
	if err != nil {
		t.Fatal(err)
	}
	if j.Progress == nil || j.Progress.Seq != workers*each {
		t.Fatalf("Seq = %+v, want %d", j.Progress, workers*each)
	}
}

// TestUpdateNested: an update callback may update another record without
// deadlocking (per-key locks).
func TestUpdateNested(t *testing.T) {
	s, _ := openTest(t)
	if err := s.CreateHost(Host{ID: "h"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(Job{ID: "j", HostID: "h", CreatedAt: ts(0)}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := s.UpdateJob("j", func(j *Job) error {
			j.Status = JobSucceeded
			_, err := s.UpdateHost("h", func(h *Host) error {
				h.LastJob = &LastBackup{JobID: "j", Status: JobSucceeded}
				return nil
			})
			return err
		})
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("nested update deadlocked")
	}
}

// BenchmarkListJobsPerHost lists the first page of one host's jobs in stores
// of growing size (every host has at least one full page). ns/op should stay
// flat: only that host's index is walked, never the other hosts' jobs.
func BenchmarkListJobsPerHost(b *testing.B) {
	const hosts = 100
	for _, total := range []int{5_000, 10_000, 50_000} {
		b.Run(fmt.Sprintf("jobs=%d", total), func(b *testing.B) {
			s, _ := openTest(b)
			wb := s.db.NewWriteBatch()
			for i := range total {
				j := Job{
					ID:        fmt.Sprintf("j%06d", i),
					HostID:    fmt.Sprintf("h%03d", i%hosts),
					Kind:      "backup",
					Status:    JobSucceeded,
					CreatedAt: ts(i),
				}
				if err := putJob(wb.Set, j); err != nil {
					b.Fatal(err)
				}
			}
			if err := wb.Flush(); err != nil {
				b.Fatal(err)
			}
			load0 := benchout.LoadAvg()
			b.ResetTimer()
			for b.Loop() {
				jobs, _, err := s.ListJobs(JobQuery{HostID: "h042", Limit: 50})
				if err != nil || len(jobs) != 50 {
					b.Fatalf("got %d jobs, %v", len(jobs), err)
				}
			}
			b.ReportMetric(float64(total), "jobs_in_store")
			// No target: the figure should stay flat as the store grows,
			// which the table shows with the sizes side by side.
			if err := benchout.Write(fmt.Sprintf("listjobs-%d", total), []benchout.Figure{{
				ID: fmt.Sprintf("listjobs.%d.us", total), Group: benchout.GroupStore,
				What:  fmt.Sprintf("first page (50) of one host's jobs, %d jobs in the store", total),
				Value: float64(b.Elapsed().Nanoseconds()) / 1000 / float64(b.N), Unit: "µs", Load: benchout.LoadSince(load0),
				Command: benchout.GoTest("./storage/", "BenchmarkListJobsPerHost", fmt.Sprintf("%dx", b.N)),
			}}); err != nil {
				b.Error(err)
			}
		})
	}
}
