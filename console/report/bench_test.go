package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
	"github.com/restic-manager/restic-manager/storage"
)

// BenchmarkComplianceReport makes the compliance report of 10,000 enrolled
// hosts under 5 policies (4 with an RPO, overlapping: about 1.3 rows a
// host) from a real store and encodes it as the API answers it, and
// reports the median and p95 time of one report in ms (the target: p95 ≤
// 200 ms). json, csv: the usual case, the reporter's host cache warm;
// csv-changed: 1,000 hosts written between two reports (their records are
// decoded again); csv-cold: a new reporter each time (every record decoded:
// the first report after a start).
//
//	go test ./console/report/ -run '^$' -bench BenchmarkComplianceReport -benchtime 20x
func BenchmarkComplianceReport(b *testing.B) {
	const hosts = 10_000
	st, err := storage.Open(b.TempDir())
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	now := time.Now().UTC()
	roles := []string{"web", "db", "app", "cache", "mail"}
	envs := []string{"prod", "prod", "staging"}
	start := time.Now()
	// Concurrent writers: Badger commits concurrent transactions together.
	err = parallel(256, hosts, func(i int) error {
		h := storage.Host{ID: fmt.Sprintf("host-%05d", i), Name: fmt.Sprintf("%s-%05d", roles[i%len(roles)], i), Enrolled: true, Online: i%20 != 0,
			Hostname: fmt.Sprintf("h%05d.example.org", i), OS: "linux", Arch: "amd64", AgentVersion: "1.0.0", ResticVersion: "0.18.1",
			CredentialHash: make([]byte, 32), PublicKey: "age1qqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqqq",
			LastSeen: now, StartedAt: now, CreatedAt: now.Add(-90 * 24 * time.Hour),
			Labels: map[string]string{"role": roles[i%len(roles)], "env": envs[i%len(envs)], "site": fmt.Sprintf("site-%d", i%7)}}
		if i%50 != 0 { // one in 50 never backed up
			h.LastBackup = &storage.LastBackup{JobID: fmt.Sprintf("job-%07d", i), Kind: "backup", Status: storage.JobSucceeded,
				EndedAt: now.Add(-time.Duration(i%60) * time.Hour), SnapshotID: "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}
			h.LastJob, h.LastSuccess = h.LastBackup, h.LastBackup
		}
		return st.CreateHost(h)
	})
	if err != nil {
		b.Fatal(err)
	}
	created := now.Add(-30 * 24 * time.Hour)
	policies := []storage.Policy{
		{ID: "pol-web", Name: "web", Selector: map[string]string{"role": "web"}, RPO: 26 * time.Hour, CreatedAt: created},
		{ID: "pol-db", Name: "db", Selector: map[string]string{"role": "db"}, RPO: 6 * time.Hour, CreatedAt: created},
		{ID: "pol-app", Name: "app", Selector: map[string]string{"role": "app"}, RPO: 26 * time.Hour, CreatedAt: created},
		{ID: "pol-prod", Name: "prod", Selector: map[string]string{"env": "prod"}, RPO: 48 * time.Hour, CreatedAt: created},
		{ID: "pol-mail", Name: "mail", Selector: map[string]string{"role": "mail"}, CreatedAt: created}, // no RPO
	}
	for _, p := range policies {
		if err := st.PutPolicy(p); err != nil {
			b.Fatal(err)
		}
	}
	b.Logf("store filled: %d hosts in %s", hosts, time.Since(start).Round(time.Second))
	pols, err := st.ListPolicies()
	if err != nil {
		b.Fatal(err)
	}
	list := func() []storage.Policy { return pols }
	warm := New(st, list)
	if _, err := warm.Compliance(context.Background(), "", now); err != nil {
		b.Fatal(err)
	}

	round := 0
	// The figures of each mode's last run (the framework may run a mode
	// more than once), written together once all have run.
	figs := map[string][]benchout.Figure{}
	modes := []string{"json", "csv", "csv-changed", "csv-cold"}
	modeWhat := map[string]string{"json": "JSON", "csv": "CSV", "csv-changed": "CSV, 1,000 hosts changed", "csv-cold": "CSV, first after a start"}
	for _, mode := range modes {
		b.Run(mode, func(b *testing.B) {
			load0 := benchout.LoadAvg()
			var times []time.Duration
			var buf bytes.Buffer
			rows := 0
			for b.Loop() {
				r := warm
				switch mode {
				case "csv-cold":
					r = New(st, list)
				case "csv-changed":
					round++
					err := parallel(64, 1000, func(i int) error {
						_, err := st.UpdateHost(fmt.Sprintf("host-%05d", (round*1000+i)%hosts), func(h *storage.Host) error {
							h.LastSeen = time.Now()
							return nil
						})
						return err
					})
					if err != nil {
						b.Fatal(err)
					}
				}
				buf.Reset()
				t0 := time.Now()
				c, err := r.Compliance(context.Background(), "", time.Now())
				if err == nil {
					if mode == "json" {
						err = json.NewEncoder(&buf).Encode(c)
					} else {
						err = c.WriteCSV(&buf)
					}
				}
				times = append(times, time.Since(t0))
				if err != nil {
					b.Fatal(err)
				}
				if c.Totals.Hosts+c.Totals.NoRPO != hosts || c.Totals.Breached == 0 || c.Totals.Within == 0 {
					b.Fatalf("totals %+v", c.Totals)
				}
				rows = len(c.Rows)
			}
			slices.Sort(times)
			ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
			median, p95 := ms(times[len(times)/2]), ms(times[min(len(times)-1, len(times)*95/100)])
			b.ReportMetric(median, "median-ms")
			b.ReportMetric(p95, "p95-ms")
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(buf.Len())/1024, "KiB")
			fig := func(id, what string, v float64, t *benchout.Target) benchout.Figure {
				return benchout.Figure{ID: "compliance." + mode + "." + id, Group: benchout.GroupPolicies,
					What: fmt.Sprintf("compliance report, %d hosts, %s: %s of %d", hosts, modeWhat[mode], what, len(times)), Value: v, Unit: "ms",
					Target: t, Load: benchout.LoadSince(load0),
					Command: benchout.GoTest("./console/report/", "BenchmarkComplianceReport", strconv.Itoa(len(times))+"x")}
			}
			// The target is the usual report's; the first one after a
			// start (csv-cold) decodes every record and has none (README:
			// 0.2-0.8 s).
			target := benchout.AtMost(200, "ms")
			if mode == "csv-cold" {
				target = nil
			}
			figs[mode] = []benchout.Figure{fig("median_ms", "median", median, nil), fig("p95_ms", "p95", p95, target)}
		})
	}
	var all []benchout.Figure
	for _, m := range modes {
		all = append(all, figs[m]...)
	}
	if err := benchout.Write("compliance-report", all); err != nil {
		b.Error(err)
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
