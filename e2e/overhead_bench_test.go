package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// dataSet describes a generated tree.
type dataSet struct {
	dir   string
	files int
	bytes int64
	took  time.Duration
}

// genDataSet writes at least minBytes in nFiles files of random,
// incompressible content under dir: a tree of 10 x 10 x 20 directories,
// file sizes log-uniform between 256 B and 48 KiB (most files small, as in
// home directories and source trees), topped up to minBytes with ten large
// files. Content comes from a seeded PCG generator, so the set is the same
// on every run; two goroutines write it.
func genDataSet(tb testing.TB, dir string, nFiles int, minBytes int64) dataSet {
	tb.Helper()
	t0 := time.Now()
	const large = 10
	small := nFiles - large
	sizes := make([]int64, nFiles)
	rng := rand.New(rand.NewPCG(1, 2))
	lo, hi := math.Log(256), math.Log(48<<10)
	var total int64
	for i := range small {
		sizes[i] = int64(math.Exp(lo + rng.Float64()*(hi-lo)))
		total += sizes[i]
	}
	rest := max(minBytes-total, large<<20)
	for i := small; i < nFiles; i++ {
		sizes[i] = rest/large + 1
		total += sizes[i]
	}
	path := func(i int) string {
		d := i % 2000
		return filepath.Join(dir, fmt.Sprintf("top%02d", d/200), fmt.Sprintf("mid%02d", d/20%10), fmt.Sprintf("leaf%02d", d%20), fmt.Sprintf("file%06d.bin", i))
	}
	for d := range 2000 {
		if err := os.MkdirAll(filepath.Dir(path(d)), 0o755); err != nil {
			tb.Fatal(err)
		}
	}
	var wg sync.WaitGroup
	errs := make(chan error, 2)
	for w := range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			src := rand.New(rand.NewPCG(uint64(w)+10, 99))
			buf := make([]byte, 1<<20)
			for i := w; i < nFiles; i += 2 {
				f, err := os.Create(path(i))
				if err != nil {
					errs <- err
					return
				}
				for left := sizes[i]; left > 0; {
					n := min(left, int64(len(buf)))
					for k := 0; k+8 <= int(n); k += 8 {
						v := src.Uint64()
						buf[k], buf[k+1], buf[k+2], buf[k+3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
						buf[k+4], buf[k+5], buf[k+6], buf[k+7] = byte(v>>32), byte(v>>40), byte(v>>48), byte(v>>56)
					}
					if _, err := f.Write(buf[:n]); err != nil {
						errs <- err
						return
					}
					left -= n
				}
				if err := f.Close(); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		tb.Fatalf("generate data set: %v", err)
	}
	return dataSet{dir: dir, files: nFiles, bytes: total, took: time.Since(t0)}
}

// bareBackup runs restic the way the runner does for a backup job
// (runner/exec.go, runner/op_backup.go): repository and password from
// files, its own cache directory, `backup --json -- path`, stdout read
// line by line as the runner does, RESTIC_PROGRESS_FPS=2. The repository
// is initialised first, untimed.
func bareBackup(tb testing.TB, restic, repoURL, password, cacheDir, src string) (time.Duration, float64) {
	tb.Helper()
	dir := tb.TempDir()
	repoFile, pwFile := filepath.Join(dir, "repo"), filepath.Join(dir, "pw")
	if err := os.WriteFile(repoFile, []byte(repoURL), 0o600); err != nil {
		tb.Fatal(err)
	}
	if err := os.WriteFile(pwFile, []byte(password), 0o600); err != nil {
		tb.Fatal(err)
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir, "RESTIC_PROGRESS_FPS=2"}
	global := []string{"--repository-file", repoFile, "--password-file", pwFile, "--cache-dir", cacheDir}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Minute)
	defer cancel()
	initCmd := exec.CommandContext(ctx, restic, append(global, "init")...)
	initCmd.Env = env
	if out, err := initCmd.CombinedOutput(); err != nil {
		tb.Fatalf("restic init: %v\n%s", err, out)
	}

	t0 := time.Now()
	cmd := exec.CommandContext(ctx, restic, append(global, "backup", "--json", "--", src)...)
	cmd.Env = env
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	var resticSecs float64
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		var m struct {
			Type     string  `json:"message_type"`
			Duration float64 `json:"total_duration"`
		}
		if json.Unmarshal(sc.Bytes(), &m) == nil && m.Type == "summary" {
			resticSecs = m.Duration
		}
	}
	if err := cmd.Wait(); err != nil {
		tb.Fatalf("restic backup: %v\n%s", err, stderr.String())
	}
	return time.Since(t0), resticSecs
}

// agentBackup makes a fresh repository in the console, initialises it with
// an init job (untimed), then times a backup job from the API request to
// the console reporting it succeeded.
func agentBackup(tb testing.TB, srv *server, hostID, repoURL, password, src string, n int) (time.Duration, float64) {
	tb.Helper()
	repoID := srv.createRepo(fmt.Sprintf("bench-%d", n), repoURL, password, hostID)
	id := srv.createJob(hostID, map[string]any{"kind": "init", "repo_id": repoID})
	if j := srv.waitJob(id, 2*time.Minute); j.Status != "succeeded" {
		tb.Fatalf("init: %s: %s %s", j.Status, j.Error, j.StderrTail)
	}
	t0 := time.Now()
	id = srv.createJob(hostID, map[string]any{"kind": "backup", "repo_id": repoID, "args": map[string]any{"paths": []string{src}}})
	j := waitJobFast(tb, srv, id, 30*time.Minute)
	wall := time.Since(t0)
	if j.Status != "succeeded" {
		tb.Fatalf("backup through the agent: %s: %s %s", j.Status, j.Error, j.StderrTail)
	}
	var sum struct {
		Duration float64 `json:"total_duration"`
	}
	_ = json.Unmarshal(j.Summary, &sum)
	return wall, sum.Duration
}

// waitJobFast polls every 20 ms (waitJob's 100 ms would add up to 0.1 s
// to a run of about a minute).
func waitJobFast(tb testing.TB, srv *server, id string, timeout time.Duration) harness.Job {
	tb.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if j := srv.job(id); harness.Terminal(j.Status) {
			return j
		}
		time.Sleep(20 * time.Millisecond)
	}
	tb.Fatalf("job %s did not end within %s", id, timeout)
	return harness.Job{}
}

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	if len(s)%2 == 1 {
		return s[len(s)/2]
	}
	return (s[len(s)/2-1] + s[len(s)/2]) / 2
}

// BenchmarkAgentOverhead backs the same generated data set (1 GiB in
// 100,000 files unless RM_BENCH_OVERHEAD_FILES / _MIB say otherwise) up
// with bare restic and through the agent, alternately (ABBA), RM_BENCH_RUNS
// times each (default 4), every run into a fresh repository on the same
// rest-server, and reports the median wall times, their ratio, and the
// agent's idle and peak RSS (the agent process itself, not restic). Run
// with RM_BENCH_NORACE=1 so the agent is built without the race detector.
func BenchmarkAgentOverhead(b *testing.B) {
	runs, files, mib := 4, 100_000, 1024
	if v, _ := strconv.Atoi(os.Getenv("RM_BENCH_RUNS")); v > 0 {
		runs = v
	}
	if v, _ := strconv.Atoi(os.Getenv("RM_BENCH_OVERHEAD_FILES")); v > 0 {
		files = v
	}
	if v, _ := strconv.Atoi(os.Getenv("RM_BENCH_OVERHEAD_MIB")); v > 0 {
		mib = v
	}
	if os.Getenv("RM_BENCH_NORACE") == "" {
		b.Log("RM_BENCH_NORACE is not set: the agent is built with -race and its figures are inflated")
	}
	tb := testing.TB(b)
	restic := testenv.Restic(tb)

	// tb.TempDir is under os.TempDir (/tmp here, on the disk, not tmpfs)
	// and is removed when the benchmark ends.
	ds := genDataSet(tb, filepath.Join(tb.TempDir(), "data"), files, int64(mib)<<20)
	b.Logf("data set: %d files, %.2f GiB, generated in %s", ds.files, float64(ds.bytes)/(1<<30), ds.took.Round(time.Millisecond))

	repoRoot := tb.TempDir()
	rs := restServer(tb, repoRoot)
	// No health refreshes: they run restic on the agent after each job and
	// would land in the next timed run.
	srv := newServer(tb, "--health-delay", "1000h")
	host := srv.createHost("bench")
	agent := enrollAgent(tb, srv, host.EnrollToken, restic)
	agent.start(tb)
	srv.waitOnline(host.ID, true)
	pid := agent.Proc.Pid()
	time.Sleep(5 * time.Second) // let the agent settle after connecting
	idle := harness.ReadStats(pid)
	password := "bench-password"
	cacheDir := tb.TempDir()

	cpu0 := idle.CPUSecs
	load0 := benchout.LoadAvg()
	var bare, viaAgent []time.Duration
	var bareRestic, agentRestic []float64
	b.ResetTimer()
	for range b.N {
		bare, viaAgent, bareRestic, agentRestic = nil, nil, nil, nil
		for i := range runs {
			runBare := func() {
				name := fmt.Sprintf("bare-%d", i)
				w, r := bareBackup(tb, restic, "rest:http://"+rs+"/"+name+"/", password, cacheDir, ds.dir)
				bare, bareRestic = append(bare, w), append(bareRestic, r)
				if err := os.RemoveAll(filepath.Join(repoRoot, name)); err != nil {
					tb.Fatal(err)
				}
			}
			runAgent := func() {
				name := fmt.Sprintf("agent-%d", i)
				w, r := agentBackup(tb, srv, host.ID, "rest:http://"+rs+"/"+name+"/", password, ds.dir, i)
				viaAgent, agentRestic = append(viaAgent, w), append(agentRestic, r)
				if err := os.RemoveAll(filepath.Join(repoRoot, name)); err != nil {
					tb.Fatal(err)
				}
			}
			// ABBA order: each way goes first in every other pair, so a
			// drift in the machine's load or the first run's cold state
			// does not favour one.
			if i%2 == 0 {
				runBare()
				runAgent()
			} else {
				runAgent()
				runBare()
			}
			b.Logf("run %d: bare %.2fs (restic %.2fs), via agent %.2fs (restic %.2fs)", i+1,
				bare[i].Seconds(), bareRestic[i], viaAgent[i].Seconds(), agentRestic[i])
		}
	}
	b.StopTimer()
	after := harness.ReadStats(pid)
	// The agent's CPU per backup job (its init jobs included, which cost
	// next to nothing): what it takes from restic on a busy machine.
	agentCPU := (after.CPUSecs - cpu0) / float64(runs*b.N)
	time.Sleep(5 * time.Second)
	idleAfter := harness.ReadStats(pid)
	if err := agent.Proc.Signal(syscall.Signal(0)); err != nil {
		tb.Fatalf("agent died during the benchmark: %v", err)
	}

	mb, ma := median(bare), median(viaAgent)
	ratio := ma.Seconds() / mb.Seconds()
	// What each way adds around restic's own run (its summary's
	// total_duration): process start, reading the repository and password
	// files, and for the agent the command's dispatch over MQTT and the
	// result's way back to the console. Unlike the wall times, this is
	// barely touched by other load on the machine, which shifts bare and
	// agent runs alike.
	added := func(wall []time.Duration, restic []float64) time.Duration {
		var d []time.Duration
		for i := range wall {
			d = append(d, wall[i]-time.Duration(restic[i]*float64(time.Second)))
		}
		return median(d)
	}
	addedBare, addedAgent := added(bare, bareRestic), added(viaAgent, agentRestic)
	b.ReportMetric(mb.Seconds(), "bare_median_s")
	b.ReportMetric(ma.Seconds(), "agent_median_s")
	b.ReportMetric(ratio, "agent/bare")
	b.ReportMetric(addedBare.Seconds(), "bare_added_s")
	b.ReportMetric(addedAgent.Seconds(), "agent_added_s")
	b.ReportMetric(agentCPU, "agent_cpu_s/backup")
	b.ReportMetric(after.HWMMiB, "agent_peak_rss_MiB")
	b.ReportMetric(idle.RSSMiB, "agent_idle_rss_MiB")
	var tab strings.Builder
	fmt.Fprintf(&tab, "\n%-28s %10s %10s\n", "", "bare", "via agent")
	for i := range bare {
		fmt.Fprintf(&tab, "%-28s %9.2fs %9.2fs   (restic's own %.2fs, %.2fs)\n", fmt.Sprintf("run %d wall", i+1),
			bare[i].Seconds(), viaAgent[i].Seconds(), bareRestic[i], agentRestic[i])
	}
	fmt.Fprintf(&tab, "%-28s %9.2fs %9.2fs\n", "median wall", mb.Seconds(), ma.Seconds())
	fmt.Fprintf(&tab, "%-28s %9.3fs %9.3fs\n", "median wall - restic's own", addedBare.Seconds(), addedAgent.Seconds())
	fmt.Fprintf(&tab, "%-28s %10.4f\n", "ratio agent/bare (≤ 1.02)", ratio)
	fmt.Fprintf(&tab, "%-28s %9.3fs\n", "agent CPU per backup", agentCPU)
	fmt.Fprintf(&tab, "%-28s %8.1f MiB\n", "agent idle RSS (≤ 20 MB)", idle.RSSMiB)
	fmt.Fprintf(&tab, "%-28s %8.1f MiB\n", "agent idle RSS after runs", idleAfter.RSSMiB)
	fmt.Fprintf(&tab, "%-28s %8.1f MiB\n", "agent peak RSS (VmHWM)", after.HWMMiB)
	fmt.Fprintf(&tab, "data set: %d files, %.2f GiB\n", ds.files, float64(ds.bytes)/(1<<30))
	// Printed, not logged: go test truncates long benchmark logs.
	fmt.Print(tab.String())

	// The targets are the ones printed above: agent/bare ≤ 1.02, idle RSS
	// ≤ 20 MB (MB: the value is converted from /proc's MiB).
	cmd := benchout.GoTest("./e2e", "BenchmarkAgentOverhead", "1x", "RM_BENCH_NORACE", "RM_BENCH_RUNS", "RM_BENCH_OVERHEAD_FILES", "RM_BENCH_OVERHEAD_MIB")
	set := fmt.Sprintf("%d files, %.2f GiB, median of %d", ds.files, float64(ds.bytes)/(1<<30), len(bare))
	fig := func(id, what string, v float64, unit string, t *benchout.Target, r *benchout.Reference) benchout.Figure {
		return benchout.Figure{ID: "overhead." + id, Group: benchout.GroupAgent, What: what, Value: v, Unit: unit,
			Target: t, Reference: r, Load: benchout.LoadSince(load0), Command: cmd}
	}
	if err := benchout.Write("overhead", []benchout.Figure{
		fig("agent_median_s", "backup through the agent, wall ("+set+")", ma.Seconds(), "s", benchout.AtMostTimes(1.02),
			&benchout.Reference{What: "bare restic, same argv", Value: mb.Seconds(), Unit: "s"}),
		fig("agent_added_s", "backup through the agent, wall − restic's own", addedAgent.Seconds(), "s", nil,
			&benchout.Reference{What: "bare restic, same", Value: addedBare.Seconds(), Unit: "s"}),
		fig("agent_cpu_s", "agent CPU per backup", agentCPU, "s", nil, nil),
		fig("agent_idle_rss_MB", "agent idle RSS", benchout.MiBToMB(idle.RSSMiB), "MB", benchout.AtMost(20, "MB"), nil),
		fig("agent_peak_rss_MiB", "agent peak RSS (VmHWM)", after.HWMMiB, "MiB", nil, nil),
	}); err != nil {
		b.Error(err)
	}
}
