package e2e

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
)

func percentile(d []time.Duration, p float64) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[int(float64(len(s)-1)*p)]
}

// BenchmarkJobStart measures, over real processes on loopback, the time from
// POST /hosts/{id}/jobs to restic starting on the agent, and the idle RSS of
// the server and the agent. Run with `make bench`.
//
// The binaries are built with -race by the e2e harness, which inflates both
// figures; set RM_BENCH_NORACE=1 to build them without it.
func BenchmarkJobStart(b *testing.B) {
	runs := 20
	if v, _ := strconv.Atoi(os.Getenv("RM_BENCH_RUNS")); v > 0 {
		runs = v
	}
	tb := testing.TB(b)
	f := newFleet(tb, "")
	f.agent.start(tb)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(tb)
	src := makeTree(tb, 10)
	b.ResetTimer()
	for range b.N {
		var lat []time.Duration
		for range runs {
			t0 := time.Now()
			id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
			j := f.srv.waitJob(id, time.Minute)
			if j.Status != "succeeded" || j.StartedAt.IsZero() {
				b.Fatalf("job %s: %s %s", id, j.Status, j.Error)
			}
			lat = append(lat, j.StartedAt.Sub(t0))
		}
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50_start_ms")
		b.ReportMetric(float64(percentile(lat, 0.9).Microseconds())/1000, "p90_start_ms")
	}
	b.StopTimer()
	time.Sleep(5 * time.Second) // let both settle before reading idle memory
	b.ReportMetric(harness.ReadStats(f.srv.Proc.Pid()).RSSMiB, "server_idle_rss_MiB")
	b.ReportMetric(harness.ReadStats(f.agent.Proc.Pid()).RSSMiB, "agent_idle_rss_MiB")
}

// BenchmarkScheduleApply measures the time from PUT /hosts/{id}/schedules
// until the agent's report of that version is stored (20 changes, loopback).
func BenchmarkScheduleApply(b *testing.B) {
	runs := 20
	tb := testing.TB(b)
	f := newFleet(tb, "")
	f.agent.start(tb)
	f.srv.waitOnline(f.host.ID, true)
	b.ResetTimer()
	for range b.N {
		var lat []time.Duration
		for i := range runs {
			t0 := time.Now()
			r := f.srv.putSchedules(f.host.ID, []map[string]any{{
				"name": "nightly", "kind": "backup", "cron": fmt.Sprintf("%d 2 * * *", i%60), "enabled": true,
				"repo_id": f.repoID, "paths": []string{"/etc"},
			}})
			for f.srv.schedules(f.host.ID).AppliedVersion != r.Version {
				time.Sleep(2 * time.Millisecond)
			}
			lat = append(lat, time.Since(t0))
		}
		b.ReportMetric(float64(percentile(lat, 0.5).Microseconds())/1000, "p50_apply_ms")
		b.ReportMetric(float64(percentile(lat, 0.9).Microseconds())/1000, "p90_apply_ms")
	}
}
