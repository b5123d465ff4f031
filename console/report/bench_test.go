package report

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

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
	for _, mode := range []string{"json", "csv", "csv-changed", "csv-cold"} {
		b.Run(mode, func(b *testing.B) {
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
			b.ReportMetric(ms(times[len(times)/2]), "median-ms")
			b.ReportMetric(ms(times[min(len(times)-1, len(times)*95/100)]), "p95-ms")
			b.ReportMetric(float64(rows), "rows")
			b.ReportMetric(float64(buf.Len())/1024, "KiB")
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
