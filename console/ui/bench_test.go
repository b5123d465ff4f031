package ui

import (
	"context"
	"fmt"
	"net/http/httptest"
	"os"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
)

// BenchmarkDashboardRender renders the fleet dashboard server-side with
// 10,000 hosts and a large job history in the store, and reports the median
// and p95 render time of one page. 100,000 jobs by default; RM_BENCH_BIG=1
// for 1,000,000 (filling the store takes minutes: every job is its own
// synced transaction, as in production).
//
//	go test ./console/ -run '^$' -bench BenchmarkDashboardRender -benchtime 50x
//	RM_BENCH_BIG=1 go test ./console/ -run '^$' -bench BenchmarkDashboardRender -benchtime 50x -timeout 60m
func BenchmarkDashboardRender(b *testing.B) {
	const hosts = 10_000
	jobs := 100_000
	if os.Getenv("RM_BENCH_BIG") != "" {
		jobs = 1_000_000
	}
	st, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	f, err := fleet.New(fleet.Options{Store: st, Publisher: nopPublisher{}})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	c := New(Options{Fleet: f, Auth: auth.New(auth.Options{Store: st})})

	start := time.Now()
	now := time.Now().UTC()
	statuses := []string{storage.JobSucceeded, storage.JobSucceeded, storage.JobSucceeded, storage.JobFailed, storage.JobPartial}
	// Concurrent writers: Badger commits concurrent transactions together,
	// one sync for many, so filling the store does not take one fsync per job.
	err = parallel(256, hosts, func(i int) error {
		h := storage.Host{ID: fmt.Sprintf("host-%05d", i), Name: fmt.Sprintf("web-%05d", i), Enrolled: true, Online: i%20 != 0,
			Hostname: fmt.Sprintf("web%05d.example.org", i), OS: "linux", Arch: "amd64", AgentVersion: "1.0.0", ResticVersion: "0.18.1",
			LastSeen: now, CreatedAt: now}
		h.LastBackup = &storage.LastBackup{JobID: fmt.Sprintf("job-%07d", i), Kind: "backup", Status: statuses[i%len(statuses)],
			EndedAt: now.Add(-time.Duration(i%100) * time.Hour), SnapshotID: "0123456789abcdef"}
		h.LastJob = h.LastBackup
		return st.CreateHost(h)
	})
	if err != nil {
		b.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "main", DisplayURL: "rest:http://x/", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "rest:http://x/", Password: "pw"}); err != nil {
		b.Fatal(err)
	}
	err = parallel(256, jobs, func(i int) error {
		return st.CreateJob(storage.Job{ID: fmt.Sprintf("job-%07d", i), HostID: fmt.Sprintf("host-%05d", i%hosts), RepoID: "repo-1",
			Kind: "backup", Status: statuses[i%len(statuses)], ActorKind: "schedule", Actor: "nightly",
			CreatedAt: now.Add(-time.Duration(jobs-i) * time.Second), StartedAt: now, EndedAt: now})
	})
	if err != nil {
		b.Fatal(err)
	}
	b.Logf("store filled: %d hosts, %d jobs in %s", hosts, jobs, time.Since(start).Round(time.Second))

	ctx := auth.WithPrincipal(context.Background(), auth.Principal{User: "admin", Role: auth.RoleAdmin, Session: true})
	// cold: every render scans the whole fleet (the first view, or every
	// view once the summary is older than fleetCacheTTL); cached: the fleet
	// summary is reused, the page's 100 rows are read fresh.
	for _, mode := range []string{"cold", "cached"} {
		b.Run(mode, func(b *testing.B) {
			fc := &fleetCache{}
			var times []time.Duration
			for b.Loop() {
				if mode == "cold" {
					fc = &fleetCache{}
				}
				req := httptest.NewRequest("GET", "/?page=3", nil).WithContext(ctx)
				w := httptest.NewRecorder()
				t0 := time.Now()
				c.pageDashboard(fc, w, req)
				times = append(times, time.Since(t0))
				if w.Code != 200 || !strings.Contains(w.Body.String(), `id="count-hosts">10000<`) || strings.Count(w.Body.String(), "<tr data-host=") != dashboardPageSize {
					b.Fatalf("render: %d, %d bytes", w.Code, w.Body.Len())
				}
			}
			slices.Sort(times)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			b.ReportMetric(ms(times[len(times)/2]), "median-ms")
			b.ReportMetric(ms(times[min(len(times)-1, len(times)*95/100)]), "p95-ms")
			b.ReportMetric(float64(jobs), "jobs")
		})
	}
}

// parallel runs fn(0..n-1) on workers goroutines and returns the first error.
func parallel(workers, n int, fn func(i int) error) error {
	var next atomic.Int64
	var wg sync.WaitGroup
	var once sync.Once
	var first error
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					once.Do(func() { first = err })
					return
				}
			}
		}()
	}
	wg.Wait()
	return first
}

type nopPublisher struct{}

func (nopPublisher) Publish(string, []byte, bool, time.Duration) error { return nil }
