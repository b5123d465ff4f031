package storage

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
)

// fillJobs writes n finished jobs over hosts host-0..host-{hosts-1} the way
// the console does over their life (created queued, updated running with
// progress, updated with the result), each phase a separate commit so
// the store holds the overwritten versions compaction must drop, like a
// live one. Job i is created at now - span + i*span/n, so a retention of
// half the span expires about half of them. Most jobs are scheduled (a fire
// dedup key each). Records are realistic in size: a restic backup summary,
// the last progress report with current files, a stderr tail, and a few KiB
// of output. Writes go through write batches (not one fsync per update) so
// 100,000 jobs fill in seconds; the resulting layout is the same.
func fillJobs(tb testing.TB, s *Store, n, hosts int, now time.Time, span time.Duration) {
	tb.Helper()
	rng := rand.New(rand.NewPCG(uint64(n), 7))
	const chunk = 1000
	for lo := 0; lo < n; lo += chunk {
		hi := min(n, lo+chunk)
		jobs := make([]Job, 0, hi-lo)
		for i := lo; i < hi; i++ {
			created := now.Add(-span + time.Duration(float64(span)*float64(i)/float64(n)))
			j := Job{
				ID:        fmt.Sprintf("job-%08d-%04x", i, rng.Uint32()&0xffff),
				HostID:    fmt.Sprintf("host-%d", i%hosts),
				RepoID:    fmt.Sprintf("repo-%d", i%hosts/10),
				Kind:      "backup",
				Args:      json.RawMessage(`{"paths":["/home","/etc","/var/lib/postgresql"],"excludes":["*.tmp","/home/*/.cache"],"tags":["nightly"]}`),
				ActorKind: "schedule", Actor: "nightly",
				Status:    JobQueued,
				CreatedAt: created,
				ExpiresAt: created.Add(24 * time.Hour),
				TimeoutS:  86400,
			}
			if i%4 != 0 {
				j.ScheduleID = "sched-nightly"
				j.ScheduledAt = created.Truncate(time.Minute)
			}
			jobs = append(jobs, j)
		}
		// Phase 1: created.
		wb := s.db.NewWriteBatch()
		for _, j := range jobs {
			if err := putJob(wb.Set, j); err != nil {
				tb.Fatal(err)
			}
			if j.ScheduleID != "" {
				if err := wb.Set(fireJobKey(j.HostID, j.ScheduleID, j.ScheduledAt), []byte(j.ID)); err != nil {
					tb.Fatal(err)
				}
			}
		}
		flush(tb, wb)
		// Phase 2: running, with the last of its progress reports.
		wb = s.db.NewWriteBatch()
		for k := range jobs {
			j := &jobs[k]
			j.Status = JobRunning
			j.StartedAt = j.CreatedAt.Add(time.Second)
			j.Progress = &Progress{
				Seq: 900 + rng.Int64N(100), Percent: 99.2, BytesDone: 52_000_000_000 + rng.Uint64N(1e9), BytesTotal: 53_000_000_000,
				FilesDone: 412_000 + rng.Uint64N(1000), FilesTotal: 413_000,
				CurrentFiles: []string{
					fmt.Sprintf("/home/user%d/projects/app/node_modules/.cache/%08x.pack", rng.IntN(50), rng.Uint32()),
					fmt.Sprintf("/var/lib/postgresql/16/main/base/%d/%d", 16000+rng.IntN(100), rng.IntN(1e6)),
				},
				ETASeconds: 12, UpdatedAt: j.StartedAt.Add(20 * time.Minute),
			}
			setJob(tb, wb.Set, *j)
		}
		flush(tb, wb)
		// Phase 3: the result.
		wb = s.db.NewWriteBatch()
		for k := range jobs {
			j := &jobs[k]
			j.Status = JobSucceeded
			if rng.IntN(20) == 0 {
				j.Status = JobFailed
				j.Error = "restic exited with code 3: some source files could not be read"
			}
			j.EndedAt = j.StartedAt.Add(time.Duration(15+rng.IntN(30)) * time.Minute)
			code := 0
			j.ExitCode = &code
			j.SnapshotID = fmt.Sprintf("%016x%016x%016x%016x", rng.Uint64(), rng.Uint64(), rng.Uint64(), rng.Uint64())
			j.Summary = json.RawMessage(fmt.Sprintf(`{"message_type":"summary","files_new":%d,"files_changed":%d,"files_unmodified":%d,"dirs_new":%d,"dirs_changed":%d,"dirs_unmodified":%d,"data_blobs":%d,"tree_blobs":%d,"data_added":%d,"data_added_packed":%d,"total_files_processed":%d,"total_bytes_processed":%d,"total_duration":%.6f,"backup_start":%q,"backup_end":%q,"snapshot_id":%q}`,
				rng.IntN(500), rng.IntN(3000), 410_000+rng.IntN(3000), rng.IntN(50), rng.IntN(800), 40_000+rng.IntN(500),
				rng.IntN(4000), rng.IntN(900), rng.Int64N(3e9), rng.Int64N(2e9), 413_000+rng.IntN(1000), 53_000_000_000+rng.Int64N(1e9),
				rng.Float64()*2000, j.StartedAt.Format(time.RFC3339Nano), j.EndedAt.Format(time.RFC3339Nano), j.SnapshotID))
			j.StderrTail = stderrTail(rng)
			j.Output = output(rng)
			setJob(tb, wb.Set, *j)
		}
		flush(tb, wb)
	}
}

// stderrTail is what restic prints about unreadable files: ~1 KiB.
func stderrTail(rng *rand.Rand) string {
	var b strings.Builder
	for range 8 {
		fmt.Fprintf(&b, "error: open /home/user%d/.local/share/app-%04x/lock-%08x: permission denied\n", rng.IntN(50), rng.IntN(1<<16), rng.Uint32())
	}
	return b.String()
}

// output is ~3 KiB of the JSON lines the job kept (restic's verbose status
// and error messages), with enough variety that it compresses no better
// than the real thing.
func output(rng *rand.Rand) json.RawMessage {
	var lines []string
	for range 24 {
		lines = append(lines, fmt.Sprintf(`{"message_type":"verbose_status","action":"modified","item":"/home/user%d/docs/%08x-%04x.odt","duration":%.4f,"data_size":%d}`,
			rng.IntN(50), rng.Uint32(), rng.IntN(1<<16), rng.Float64(), rng.IntN(1<<24)))
	}
	b, _ := json.Marshal(lines)
	return b
}

type batchSetter interface {
	Flush() error
	Cancel()
}

func flush(tb testing.TB, wb batchSetter) {
	tb.Helper()
	defer wb.Cancel()
	if err := wb.Flush(); err != nil {
		tb.Fatal(err)
	}
}

func setJob(tb testing.TB, set func(k, v []byte) error, j Job) {
	tb.Helper()
	v, err := encode(j)
	if err != nil {
		tb.Fatal(err)
	}
	if err := set(jobKey(j.ID), v); err != nil {
		tb.Fatal(err)
	}
}

// diskUsage is what `du` says of dir: allocated blocks, so the sparse,
// preallocated tails of Badger's memtable and value-log files do not count.
func diskUsage(tb testing.TB, dir string) (alloc, sst int64) {
	tb.Helper()
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			alloc += st.Blocks * 512
		} else {
			alloc += fi.Size()
		}
		if strings.HasSuffix(p, ".sst") {
			sst += fi.Size()
		}
		return nil
	})
	if err != nil {
		tb.Fatal(err)
	}
	return alloc, sst
}

// growthRow is one line of the store-growth table.
type growthRow struct {
	jobs, kept              int
	beforeKiB, afterKiB     float64 // disk use per 1,000 jobs (jobs held)
	beforeSST, afterSST     float64 // LSM table bytes per 1,000 jobs, KiB
	purge, gc               time.Duration
	deleted, batches        int
	beforeTotal, afterTotal int64
	midTotal                int64 // after the purge, before compaction
}

var growth struct {
	mu   sync.Mutex
	rows map[int]growthRow
}

// measureGrowth fills a store with n jobs spread over 360 days, applies the
// default retention (180 days) and a GC pass, and measures the store before
// and after. Results are cached: the benchmark framework calls a benchmark
// more than once and the figure does not depend on b.N.
func measureGrowth(tb testing.TB, n int) growthRow {
	growth.mu.Lock()
	defer growth.mu.Unlock()
	if r, ok := growth.rows[n]; ok {
		return r
	}
	dir := tb.TempDir()
	s, err := Open(dir)
	if err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	now := time.Now().UTC()
	hosts := max(10, n/100)
	fillJobs(tb, s, n, hosts, now, 360*24*time.Hour)
	// Close and reopen: the memtables are flushed to tables, as in a store
	// that has been running for a while, so the figure is the settled one.
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	db := filepath.Join(dir, "db")
	before, beforeSST := diskUsage(tb, db)

	t0 := time.Now()
	st, err := s.ApplyRetention(context.Background(), DefaultRetention(), now)
	if err != nil {
		tb.Fatal(err)
	}
	purge := time.Since(t0)
	// The purge's tombstones reach the tables when the memtable is flushed
	// (after 8 MiB of writes in a live store); a restart does it here.
	if err := s.Close(); err != nil {
		tb.Fatal(err)
	}
	if s, err = Open(dir); err != nil {
		tb.Fatal(err)
	}
	defer s.Close()
	mid, _ := diskUsage(tb, db)
	t1 := time.Now()
	if !s.flushedPast(1) {
		tb.Fatal("no table after reopen")
	}
	if err := s.collectGarbage(true); err != nil {
		tb.Fatal(err)
	}
	gc := time.Since(t1)
	after, afterSST := diskUsage(tb, db)
	kept := n - st.Jobs
	per := func(b int64, jobs int) float64 { return float64(b) / 1024 / (float64(jobs) / 1000) }
	r := growthRow{
		jobs: n, kept: kept, deleted: st.Jobs, batches: st.Batches, purge: purge, gc: gc,
		beforeKiB: per(before, n), afterKiB: per(after, kept),
		beforeSST: per(beforeSST, n), afterSST: per(afterSST, kept),
		beforeTotal: before, afterTotal: after, midTotal: mid,
	}
	if growth.rows == nil {
		growth.rows = map[int]growthRow{}
	}
	growth.rows[n] = r
	return r
}

// BenchmarkStoreGrowth prints the store's size per 1,000 jobs before and
// after retention and GC. Sizes (job counts) come from RM_STORE_JOBS, a
// comma-separated list (default 10000; `make bench` adds 100000).
func BenchmarkStoreGrowth(b *testing.B) {
	sizes := []int{10_000}
	if v := os.Getenv("RM_STORE_JOBS"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(f))
			if err != nil || n <= 0 {
				b.Fatalf("RM_STORE_JOBS: bad count %q", f)
			}
			sizes = append(sizes, n)
		}
	}
	for _, n := range sizes {
		b.Run(fmt.Sprintf("jobs=%d", n), func(b *testing.B) {
			var r growthRow
			load0 := benchout.LoadAvg()
			for range b.N {
				r = measureGrowth(b, n)
			}
			b.ReportMetric(r.beforeKiB, "KiB/1000jobs_before")
			b.ReportMetric(r.afterKiB, "KiB/1000jobs_after")
			b.ReportMetric(float64(r.beforeTotal)/(1<<20), "MiB_before")
			b.ReportMetric(float64(r.afterTotal)/(1<<20), "MiB_after")
			b.ReportMetric(r.purge.Seconds(), "purge_s")
			b.ReportMetric(r.gc.Seconds(), "gc_s")
			b.Logf("\n%8s %8s %8s | %10s %10s %10s | %12s %12s | %12s %12s | %7s %7s",
				"jobs", "deleted", "kept", "MiB before", "MiB purged", "MiB after", "KiB/1k bef.", "KiB/1k aft.", "SST/1k bef.", "SST/1k aft.", "purge", "gc")
			b.Logf("%8d %8d %8d | %10.1f %10.1f %10.1f | %12.0f %12.0f | %12.0f %12.0f | %6.1fs %6.1fs",
				r.jobs, r.deleted, r.kept, float64(r.beforeTotal)/(1<<20), float64(r.midTotal)/(1<<20), float64(r.afterTotal)/(1<<20),
				r.beforeKiB, r.afterKiB, r.beforeSST, r.afterSST, r.purge.Seconds(), r.gc.Seconds())
			fig := func(id, what string, v float64, unit string) benchout.Figure {
				return benchout.Figure{ID: fmt.Sprintf("storegrowth.%d.%s", n, id), Group: benchout.GroupStore,
					What: fmt.Sprintf("%d jobs over 360 days: %s", n, what), Value: v, Unit: unit,
					Load: benchout.LoadSince(load0), Command: benchout.GoTest("./storage/", "BenchmarkStoreGrowth", "1x", "RM_STORE_JOBS")}
			}
			if err := benchout.Write(fmt.Sprintf("storegrowth-%d", n), []benchout.Figure{
				fig("before_KiB", "store per 1,000 jobs before retention", r.beforeKiB, "KiB"),
				fig("after_KiB", fmt.Sprintf("store per 1,000 jobs after retention and GC (%d kept)", r.kept), r.afterKiB, "KiB"),
				fig("before_MiB", "store before retention", float64(r.beforeTotal)/(1<<20), "MiB"),
				fig("after_MiB", "store after retention and GC", float64(r.afterTotal)/(1<<20), "MiB"),
				fig("purge_s", fmt.Sprintf("retention purge of %d jobs", r.deleted), r.purge.Seconds(), "s"),
				fig("gc_s", "GC after the purge", r.gc.Seconds(), "s"),
			}); err != nil {
				b.Error(err)
			}
		})
	}
}
