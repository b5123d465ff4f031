package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// BenchmarkPostgresSource times a ~1 GiB plain pg_dump backed up through
// the agent's source against the same dump piped into restic by hand
// (`pg_dump | restic backup --stdin`), alternating on one repository after
// a first run that stores the data (so every timed run deduplicates the
// same bytes), and samples the agent's RSS while it streams.
//
//	go test ./e2e -run '^$' -bench BenchmarkPostgresSource -benchtime 1x -timeout 30m
func BenchmarkPostgresSource(b *testing.B) {
	rows := 2_000_000 // ≈ 1.07 GiB of plain dump
	if v, err := strconv.Atoi(os.Getenv("RM_BENCH_PG_ROWS")); err == nil {
		rows = v
	}
	pg := startPostgres(b)
	pg.createDB(b, "big")
	start := time.Now()
	pg.psql(b, "big", fmt.Sprintf(`CREATE TABLE big (id bigint PRIMARY KEY, payload text NOT NULL);
INSERT INTO big SELECT g, md5(g::text) || repeat(md5((g * 7)::text), 15) FROM generate_series(1, %d) g`, rows))
	b.Logf("filled %d rows in %s", rows, time.Since(start).Round(time.Second))

	srv := newServer(b)
	f := newFleetOn(b, srv, testenv.Restic(b))
	pgDump := filepath.Join(pg.Bin, "pg_dump")
	addAgentCommands(b, f.agent, nil, map[string]any{"pg-big": map[string]any{
		"command":  []string{pgDump, "--format=plain", "--dbname=big"},
		"filename": "big.sql",
		"env":      map[string]string{"PGHOST": pg.Host, "PGPORT": pg.Port, "PGUSER": pg.User, "PGPASSWORD": pg.Password, "PGSSLMODE": "disable"},
	}})
	f.agent.start(b)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(b)

	pw := filepath.Join(b.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(f.password), 0o600); err != nil {
		b.Fatal(err)
	}
	byHand := func() (time.Duration, int64) {
		script := fmt.Sprintf(`%s --format=plain --dbname=big | %s -r %s --password-file %s --cache-dir %s backup --json --quiet --stdin --stdin-filename big.sql >/dev/null`,
			pgDump, testenv.Restic(b), f.repoURL, pw, filepath.Join(b.TempDir(), "cache"))
		cmd := exec.Command("bash", "-o", "pipefail", "-c", script)
		cmd.Env = append(pg.Env(), "PATH="+os.Getenv("PATH"))
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		t0 := time.Now()
		if err := cmd.Run(); err != nil {
			b.Fatalf("pg_dump | restic: %v\n%s", err, stderr.String())
		}
		return time.Since(t0), 0
	}
	var dumpBytes uint64
	throughAgent := func() (time.Duration, int64) {
		var maxRSS atomic.Int64
		stop := make(chan struct{})
		done := make(chan struct{})
		go func() {
			defer close(done)
			for {
				if kb := rssKiB(f.agent.Proc.Pid()); kb > maxRSS.Load() {
					maxRSS.Store(kb)
				}
				select {
				case <-stop:
					return
				case <-time.After(50 * time.Millisecond):
				}
			}
		}()
		t0 := time.Now()
		id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"sources": []string{"pg-big"}}})
		j := f.srv.waitJob(id, 20*time.Minute)
		d := time.Since(t0)
		close(stop)
		<-done
		if j.Status != wire.StatusSucceeded {
			b.Fatalf("source backup: %s: %s", j.Status, j.Error)
		}
		var out wire.BackupOutput
		if err := json.Unmarshal(j.Output, &out); err == nil && len(out.Snapshots) == 1 {
			dumpBytes = out.Snapshots[0].Bytes
		}
		if !j.StartedAt.IsZero() && !j.EndedAt.IsZero() {
			d = j.EndedAt.Sub(j.StartedAt) // the agent's run, without the console's dispatch
		}
		return d, maxRSS.Load()
	}

	first, _ := byHand()
	b.Logf("first run (stores the data), by hand: %s", first.Round(100*time.Millisecond))
	var hand, agent []time.Duration
	var rss int64
	load0 := benchout.LoadAvg()
	b.ResetTimer()
	for round := 0; round < 2; round++ {
		d, _ := byHand()
		hand = append(hand, d)
		d, r := throughAgent()
		agent = append(agent, d)
		rss = max(rss, r)
	}
	b.StopTimer()
	out, _ := exec.Command(pgDump, "--version").Output()
	size := pg.psql(b, "big", "SELECT pg_size_pretty(pg_database_size('big'))")
	b.Logf("%s; database %s; dump %d MiB (%d bytes)", strings.TrimSpace(string(out)), size, dumpBytes>>20, dumpBytes)
	b.Logf("pg_dump | restic backup --stdin by hand: %v", roundAll(hand))
	b.Logf("through the agent's source:              %v", roundAll(agent))
	b.Logf("agent RSS while streaming: max %d MiB", rss/1024)
	b.ReportMetric(float64(mean(agent))/float64(mean(hand)), "agent/hand")
	b.ReportMetric(float64(rss)/1024, "agent-max-RSS-MiB")
	cmd := benchout.GoTest("./e2e", "BenchmarkPostgresSource", "1x", "RM_BENCH_NORACE", "RM_BENCH_PG_ROWS")
	fig := func(id, what string, v float64, unit string, r *benchout.Reference) benchout.Figure {
		return benchout.Figure{ID: "pgsource." + id, Group: benchout.GroupSources, What: what, Value: v, Unit: unit,
			Reference: r, Load: benchout.LoadSince(load0), Command: cmd}
	}
	if err := benchout.Write("pgsource", []benchout.Figure{
		fig("agent_s", fmt.Sprintf("PostgreSQL dump (%d MiB) through the agent's source, mean of %d", dumpBytes>>20, len(agent)), mean(agent).Seconds(), "s",
			&benchout.Reference{What: "pg_dump | restic backup --stdin", Value: mean(hand).Seconds(), Unit: "s"}),
		fig("agent_rss_MiB", "agent RSS while streaming the dump, max", float64(rss)/1024, "MiB", nil),
	}); err != nil {
		b.Error(err)
	}
}

// rssKiB is a process's resident set in KiB (0 when it is gone).
func rssKiB(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, "VmRSS:") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				n, _ := strconv.ParseInt(f[1], 10, 64)
				return n
			}
		}
	}
	return 0
}

func roundAll(ds []time.Duration) []time.Duration {
	out := make([]time.Duration, len(ds))
	for i, d := range ds {
		out[i] = d.Round(100 * time.Millisecond)
	}
	return out
}

func mean(ds []time.Duration) time.Duration {
	var s time.Duration
	for _, d := range ds {
		s += d
	}
	return s / time.Duration(len(ds))
}
