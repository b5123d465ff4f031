package e2e

import (
	"fmt"
	"os"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
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
	load0 := benchout.LoadAvg()
	var p50, p90 float64
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
		p50, p90 = float64(percentile(lat, 0.5).Microseconds())/1000, float64(percentile(lat, 0.9).Microseconds())/1000
		b.ReportMetric(p50, "p50_start_ms")
		b.ReportMetric(p90, "p90_start_ms")
	}
	b.StopTimer()
	time.Sleep(5 * time.Second) // let both settle before reading idle memory
	srvRSS, agentRSS := harness.ReadStats(f.srv.Proc.Pid()).RSSMiB, harness.ReadStats(f.agent.Proc.Pid()).RSSMiB
	b.ReportMetric(srvRSS, "server_idle_rss_MiB")
	b.ReportMetric(agentRSS, "agent_idle_rss_MiB")
	cmd := benchout.GoTest("./e2e", "BenchmarkJobStart", "1x", "RM_BENCH_NORACE", "RM_BENCH_RUNS")
	fig := func(id, what string, v float64, unit string) benchout.Figure {
		return benchout.Figure{ID: "jobstart." + id, Group: benchout.GroupDispatch, What: what, Value: v, Unit: unit, Load: benchout.LoadSince(load0), Command: cmd}
	}
	if err := benchout.Write("jobstart", []benchout.Figure{
		fig("p50_ms", fmt.Sprintf("job POST → restic started on the agent, p50 of %d", runs), p50, "ms"),
		fig("p90_ms", fmt.Sprintf("job POST → restic started on the agent, p90 of %d", runs), p90, "ms"),
		fig("server_idle_rss_MiB", "server idle RSS (one agent)", srvRSS, "MiB"),
		fig("agent_idle_rss_MiB", "agent idle RSS", agentRSS, "MiB"),
	}); err != nil {
		b.Error(err)
	}
}

// BenchmarkScheduleApply measures the time from PUT /hosts/{id}/schedules
// until the agent's report of that version is stored (20 changes, loopback).
func BenchmarkScheduleApply(b *testing.B) {
	runs := 20
	tb := testing.TB(b)
	f := newFleet(tb, "")
	f.agent.start(tb)
	f.srv.waitOnline(f.host.ID, true)
	load0 := benchout.LoadAvg()
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
		p50, p90 := float64(percentile(lat, 0.5).Microseconds())/1000, float64(percentile(lat, 0.9).Microseconds())/1000
		b.ReportMetric(p50, "p50_apply_ms")
		b.ReportMetric(p90, "p90_apply_ms")
		cmd := benchout.GoTest("./e2e", "BenchmarkScheduleApply", "1x", "RM_BENCH_NORACE")
		fig := func(id, what string, v float64) benchout.Figure {
			return benchout.Figure{ID: "scheduleapply." + id, Group: benchout.GroupDispatch, What: what, Value: v, Unit: "ms", Load: benchout.LoadSince(load0), Command: cmd}
		}
		if err := benchout.Write("scheduleapply", []benchout.Figure{
			fig("p50_ms", fmt.Sprintf("schedule PUT → agent's report stored, p50 of %d", runs), p50),
			fig("p90_ms", fmt.Sprintf("schedule PUT → agent's report stored, p90 of %d", runs), p90),
		}); err != nil {
			b.Error(err)
		}
	}
}
