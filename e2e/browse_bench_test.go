package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// BenchmarkSnapshotBrowse indexes a snapshot of RM_BENCH_FILES files
// (200,000 unless set) in a wide tree (folders of 1,000 files) and in a deep
// one (chains of 20 nested folders of 50 files), and reports, in the same
// run and on the same repository:
//
//   - restic_ls_s: one full `restic ls --json SNAPSHOT` (warm cache, as the
//     agent has), the mean of a run before and a run after the index;
//   - browsable_s: from the first browse request (a 409, then the
//     operator's POST …/index) until the folder lists (polled every 20 ms);
//     ratio_x is browsable_s / restic_ls_s;
//   - open_p50_ms, open_p95_ms: 60 folder opens from the index;
//   - restart_first_ms, restart_p95_ms: the first folder open after a server
//     restart, and the p95 of 60 opens including it;
//   - store_B_per_node: the index's keys and values per node (IndexMeta.bytes);
//     disk_B_per_node: growth of the data directory per node after the
//     restart (what Badger holds on disk, compaction permitting).
//
// The machine's load average is printed next to the figures: on a shared
// 2-core box they move with it.
//
//	RM_BENCH_NORACE=1 go test ./e2e -run '^$' -bench BenchmarkSnapshotBrowse -benchtime 1x -timeout 40m
//	RM_BENCH_NORACE=1 RM_BENCH_FILES=1000000 go test ./e2e -run '^$' -bench BenchmarkSnapshotBrowse -benchtime 1x -timeout 120m
func BenchmarkSnapshotBrowse(b *testing.B) {
	files := 200_000
	if v, _ := strconv.Atoi(os.Getenv("RM_BENCH_FILES")); v > 0 {
		files = v
	}
	for _, shape := range []string{"wide", "deep"} {
		b.Run(fmt.Sprintf("%s-%d", shape, files), func(b *testing.B) { benchBrowse(b, shape, files) })
	}
}

// browseTree writes a tree of about files small files and returns its
// folders with the number of entries each lists. wide: folders of 1,000
// files side by side; deep: chains of 20 nested folders, each holding 50
// files and the next folder.
func browseTree(tb testing.TB, shape string, files int) (string, map[string]int) {
	tb.Helper()
	src := tb.TempDir()
	dirs := map[string]int{}
	n := 0
	write := func(dir string, count int) {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			tb.Fatal(err)
		}
		for range count {
			if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%07d", n)), []byte(strconv.Itoa(n)), 0o644); err != nil {
				tb.Fatal(err)
			}
			n++
		}
	}
	switch shape {
	case "wide":
		for d := range max(files/1000, 1) {
			dir := filepath.Join(src, fmt.Sprintf("d%04d", d))
			write(dir, 1000)
			dirs[dir] = 1000
		}
	case "deep":
		const depth, per = 20, 50
		for c := range max(files/(depth*per), 1) {
			dir := filepath.Join(src, fmt.Sprintf("c%04d", c))
			for l := 1; l <= depth; l++ {
				dir = filepath.Join(dir, fmt.Sprintf("l%02d", l))
				write(dir, per)
				dirs[dir] = per + 1
				if l == depth {
					dirs[dir] = per
				}
			}
		}
	}
	return src, dirs
}

func benchBrowse(b *testing.B, shape string, files int) {
	tb := testing.TB(b)
	f := newFleet(tb, "")
	f.agent.start(tb)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(tb)
	src, dirs := browseTree(tb, shape, files)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	bj := f.srv.waitJob(id, 60*time.Minute)
	if bj.Status != "succeeded" {
		b.Fatalf("backup: %s %s", bj.Status, bj.Error)
	}
	sample := make([]string, 0, len(dirs))
	for d := range dirs {
		sample = append(sample, d)
	}
	sort.Strings(sample)
	cache := tb.TempDir()
	resticLs(tb, f, bj.SnapshotID, cache) // warms the cache, as the agent's is
	b.ResetTimer()
	for range b.N {
		// The console knows the snapshot once its list is refreshed after
		// the backup: until then a folder is a 404, not the first request.
		eventually(tb, 5*time.Minute, "snapshot known", func() error {
			if code, _, _ := f.ls(tb, bj.SnapshotID, "/"); code == http.StatusNotFound {
				return errorf("status %d", code)
			}
			return nil
		})
		load0, bload0 := loadAvg(), benchout.LoadAvg()
		ref1 := resticLs(tb, f, bj.SnapshotID, cache)
		disk0 := dirBytes(f.srv.Data)

		t0 := time.Now()
		jobID := f.waitBrowsable(tb, bj.SnapshotID, sample[0])
		browsable := time.Since(t0)
		ij := f.srv.job(jobID)

		ref2 := resticLs(tb, f, bj.SnapshotID, cache)
		ref := (ref1 + ref2) / 2
		var meta struct {
			Nodes int   `json:"nodes"`
			Bytes int64 `json:"bytes"`
		}
		f.srv.do("GET", "/api/v1/repos/"+f.repoID+"/snapshots/"+bj.SnapshotID+"/index", nil, &meta, 200)
		opens := f.openSample(tb, bj.SnapshotID, sample, dirs)

		if err := f.srv.Proc.Stop(30 * time.Second); err != nil {
			b.Fatal(err)
		}
		f.srv = f.srv.again(tb)
		after := f.openSample(tb, bj.SnapshotID, sample[len(sample)/2:], dirs)
		disk1 := dirBytes(f.srv.Data)
		load1 := loadAvg()

		openP50, openP95 := ms(percentile(opens, 0.5)), ms(percentile(opens, 0.95))
		restartFirst, restartP95 := ms(after[0]), ms(percentile(after, 0.95))
		storePerNode, diskPerNode := float64(meta.Bytes)/float64(meta.Nodes), float64(disk1-disk0)/float64(meta.Nodes)
		b.ReportMetric(float64(meta.Nodes), "nodes")
		b.ReportMetric(ref.Seconds(), "restic_ls_s")
		b.ReportMetric(browsable.Seconds(), "browsable_s")
		b.ReportMetric(browsable.Seconds()/ref.Seconds(), "ratio_x")
		b.ReportMetric(ij.EndedAt.Sub(ij.StartedAt).Seconds(), "job_s")
		b.ReportMetric(openP50, "open_p50_ms")
		b.ReportMetric(openP95, "open_p95_ms")
		b.ReportMetric(restartFirst, "restart_first_ms")
		b.ReportMetric(restartP95, "restart_p95_ms")
		b.ReportMetric(storePerNode, "store_B_per_node")
		b.ReportMetric(diskPerNode, "disk_B_per_node")
		// The targets (docs/scale.md): browsable within 1.2 × one warm
		// `restic ls` of the same snapshot, folder opens p95 ≤ 20 ms.
		name := fmt.Sprintf("%s-%d", shape, files)
		fig := func(id, what string, v float64, unit string, t *benchout.Target, r *benchout.Reference) benchout.Figure {
			return benchout.Figure{ID: "browse." + name + "." + id, Group: benchout.GroupBrowsing,
				What: fmt.Sprintf("%s (%s, %d files, %d nodes)", what, shape, files, meta.Nodes), Value: v, Unit: unit,
				Target: t, Reference: r, Load: benchout.LoadSince(bload0),
				Command: benchout.GoTest("./e2e", "BenchmarkSnapshotBrowse", "1x", "RM_BENCH_NORACE", "RM_BENCH_FILES")}
		}
		err := benchout.Write("browse-"+name, []benchout.Figure{
			fig("browsable_s", "first browse request → folder lists", browsable.Seconds(), "s", benchout.AtMostTimes(1.2),
				&benchout.Reference{What: "warm restic ls --json", Value: ref.Seconds(), Unit: "s"}),
			fig("open_p50_ms", "folder open p50", openP50, "ms", nil, nil),
			fig("open_p95_ms", "folder open p95", openP95, "ms", benchout.AtMost(20, "ms"), nil),
			fig("restart_first_ms", "first folder open after a server restart", restartFirst, "ms", nil, nil),
			fig("restart_p95_ms", "folder open p95 after a server restart", restartP95, "ms", benchout.AtMost(20, "ms"), nil),
			fig("store_B_per_node", "index store bytes per node", storePerNode, "B", nil, nil),
			fig("disk_B_per_node", "data directory growth per node", diskPerNode, "B", nil, nil),
		})
		if err != nil {
			b.Error(err)
		}
		b.Logf("%s %d: restic ls %.2fs / %.2fs, browsable %.2fs (job %s→%s→%s); load %s → %s",
			shape, files, ref1.Seconds(), ref2.Seconds(), browsable.Seconds(),
			ij.CreatedAt.Sub(t0).Round(time.Millisecond), ij.StartedAt.Sub(t0).Round(time.Millisecond), ij.EndedAt.Sub(t0).Round(time.Millisecond), load0, load1)
	}
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

// resticLs times one full `restic ls --json SNAPSHOT`, its output read and
// dropped, with the given cache directory.
func resticLs(tb testing.TB, f *fleet, snap, cache string) time.Duration {
	tb.Helper()
	pw := filepath.Join(tb.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(f.password), 0o600); err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Restic(tb), "-r", f.repoURL, "--password-file", pw, "--cache-dir", cache, "ls", "--json", snap)
	var stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = io.Discard, &stderr
	t0 := time.Now()
	if err := cmd.Run(); err != nil {
		tb.Fatalf("restic ls: %v: %s", err, stderr.String())
	}
	return time.Since(t0)
}

// ls lists a folder through the API: the status, the entries and the job
// ID of an index in flight (on a 409).
func (f *fleet) ls(tb testing.TB, snap, dir string) (int, int, string) {
	tb.Helper()
	req, _ := http.NewRequest("GET", f.srv.URL("/api/v1/repos/"+f.repoID+"/snapshots/"+snap+"/ls?limit=10000&path="+dir), nil)
	resp, err := f.srv.API.HTTP.Do(req)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		var body struct {
			JobID string `json:"job_id"`
		}
		_ = json.NewDecoder(resp.Body).Decode(&body)
		return resp.StatusCode, 0, body.JobID
	}
	var entries []json.RawMessage
	if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
		tb.Fatal(err)
	}
	return resp.StatusCode, len(entries), ""
}

// waitBrowsable opens dir as a user would, starts the index on the first
// 409 as an operator would, and polls every 20 ms until the folder lists.
// It returns the index job's ID.
func (f *fleet) waitBrowsable(tb testing.TB, snap, dir string) string {
	tb.Helper()
	var started struct {
		JobID string `json:"job_id"`
	}
	deadline := time.Now().Add(time.Hour)
	for time.Now().Before(deadline) {
		code, _, _ := f.ls(tb, snap, dir)
		switch {
		case code == http.StatusOK:
			return started.JobID
		case code != http.StatusConflict:
			tb.Fatalf("%s: status %d", dir, code)
		case started.JobID == "":
			f.srv.do("POST", "/api/v1/repos/"+f.repoID+"/snapshots/"+snap+"/index", nil, &started, 202)
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("%s: not browsable within an hour", dir)
	return ""
}

// openSample opens 60 folders of the sample (spread over it) and returns
// each one's latency, checking its entry count.
func (f *fleet) openSample(tb testing.TB, snap string, sample []string, want map[string]int) []time.Duration {
	tb.Helper()
	var lat []time.Duration
	for i := range 60 {
		d := sample[(i*7919)%len(sample)]
		t0 := time.Now()
		code, n, _ := f.ls(tb, snap, d)
		lat = append(lat, time.Since(t0))
		if code != http.StatusOK || n != want[d] {
			tb.Fatalf("%s: status %d, %d entries, want %d", d, code, n, want[d])
		}
	}
	return lat
}

// dirBytes sums the sizes of the files below dir.
func dirBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// loadAvg is the first three fields of /proc/loadavg.
func loadAvg() string {
	b, _ := os.ReadFile("/proc/loadavg")
	f := bytes.Fields(b)
	if len(f) < 3 {
		return "?"
	}
	return string(bytes.Join(f[:3], []byte(" ")))
}
