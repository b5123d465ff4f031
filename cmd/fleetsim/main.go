// Command fleetsim measures the control plane at fleet scale: it starts a
// real `restic-manager server` process, enrols N simulated agents through
// the real enrolment API, connects each over its own MQTT 5 connection and
// drives the wire contract through five timed scenarios (connect storm,
// schedule rollout, fire storm, concurrent progress streams, ingest
// ceiling against a bare broker). The agents never run restic: a command
// becomes a made-up job that reports progress and a result.
//
//	go run ./cmd/fleetsim -agents 10000 -jobs 1000 -json out.json
//
// `fleetsim bare-broker` is the ceiling's reference: the embedded broker
// with an accept-all authenticator and a counting no-op ingestor.
//
// With -broker mosquitto the simulator starts Mosquitto 2 with the
// password and ACL files the console writes, runs the console with
// --broker-url and connects the agents to Mosquitto; there a PUBACK is
// the broker's, so "stored" is read from the console's counters.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"strings"
	"syscall"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
)

// config is everything a run needs; flags fill it, the test builds it.
type config struct {
	Broker        string // brokerEmbedded or brokerMosquitto (the console with --broker-url)
	Agents        int
	Jobs          int
	Duration      time.Duration // progress streaming time (scenario 4)
	ProgressRate  float64       // progress messages per job and second
	Publishers    int           // flood publishers (scenario 5)
	Flood         time.Duration // flood time per target (scenario 5)
	SSESample     int           // jobs watched over SSE (scenario 4)
	Dups          int           // duplicate fires republished (scenario 3)
	Repos         int           // repositories the hosts are spread over (0: one per 100 hosts)
	ConnParallel  int           // connection attempts in flight (scenario 1)
	HTTPParallel  int           // API requests in flight
	Workers       int           // simulator publish workers
	Timeout       time.Duration // per wait
	ServerBin     string        // prebuilt server binary (default: go build)
	ServerArgs    []string      // extra server flags
	ServerEnv     []string      // extra server environment (KEY=VALUE)
	Keep          bool          // keep the data directory
	JSONOut       string
	SkipBare      bool
	Scenarios     []string      // run only these after enrol and connect (empty: all)
	PolicyEdits   int           // policy scenario: edits timed one after another
	Idle          time.Duration // idle scenario: how long the connected fleet rests (0: skipped)
	PprofCPU      time.Duration // with -pprof-dir: CPU profile length per scenario
	PprofDir      string        // build the server with a pprof listener and save profiles here
	Log           *slog.Logger
	SettleTimeout time.Duration
}

func defaultConfig() config {
	return config{
		Broker: brokerEmbedded, Agents: 200, Jobs: 50, Duration: 10 * time.Second, ProgressRate: 2, Publishers: 100,
		Flood: 5 * time.Second, SSESample: 50, Dups: 10, ConnParallel: 1000, HTTPParallel: 48,
		Workers: 256, Timeout: 3 * time.Minute, SettleTimeout: 20 * time.Second,
	}
}

func main() {
	if len(os.Args) > 1 && os.Args[1] == "bare-broker" {
		if err := bareBrokerMain(os.Args[2:]); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim bare-broker:", err)
			os.Exit(1)
		}
		return
	}
	cfg := defaultConfig()
	fs := flag.NewFlagSet("fleetsim", flag.ExitOnError)
	fs.StringVar(&cfg.Broker, "broker", cfg.Broker, "the broker: embedded (the console's own) or mosquitto (Debian's Mosquitto 2 started here, the console on it with --broker-url)")
	fs.IntVar(&cfg.Agents, "agents", cfg.Agents, "simulated agents (each its own enrolled host and MQTT connection)")
	fs.IntVar(&cfg.Jobs, "jobs", cfg.Jobs, "concurrent jobs streaming progress (scenario 4)")
	fs.DurationVar(&cfg.Duration, "duration", cfg.Duration, "how long the jobs stream progress")
	fs.Float64Var(&cfg.ProgressRate, "progress-rate", cfg.ProgressRate, "progress messages per job and second")
	fs.IntVar(&cfg.Publishers, "publishers", cfg.Publishers, "flood publishers for the ingest ceiling (scenario 5)")
	fs.DurationVar(&cfg.Flood, "flood", cfg.Flood, "flood time against each of the console and the bare broker")
	fs.IntVar(&cfg.SSESample, "sse", cfg.SSESample, "jobs whose SSE stream is watched for publish → event latency")
	fs.IntVar(&cfg.Dups, "dups", cfg.Dups, "fires republished as duplicates (half the same fire, half a new fire for the same minute)")
	fs.IntVar(&cfg.Repos, "repos", 0, "repositories the hosts are spread over (0: one per 100 hosts)")
	fs.IntVar(&cfg.ConnParallel, "connect-parallel", cfg.ConnParallel, "connection attempts in flight during the connect storm")
	fs.IntVar(&cfg.HTTPParallel, "http-parallel", cfg.HTTPParallel, "API requests in flight")
	fs.IntVar(&cfg.Workers, "workers", cfg.Workers, "simulator publish workers")
	fs.DurationVar(&cfg.Timeout, "timeout", cfg.Timeout, "give up waiting after this long (per wait)")
	fs.StringVar(&cfg.ServerBin, "server-bin", "", "prebuilt restic-manager binary (default: go build ./cmd/restic-manager)")
	fs.Func("server-env", "KEY=VALUE added to the server's environment (repeatable), e.g. GOMEMLIMIT=350MiB", func(v string) error {
		if !strings.Contains(v, "=") {
			return fmt.Errorf("want KEY=VALUE, got %q", v)
		}
		cfg.ServerEnv = append(cfg.ServerEnv, v)
		return nil
	})
	fs.Func("server-arg", "extra flag for the server (repeatable)", func(v string) error {
		cfg.ServerArgs = append(cfg.ServerArgs, v)
		return nil
	})
	fs.BoolVar(&cfg.Keep, "keep", false, "keep the server's data directory and log")
	fs.StringVar(&cfg.JSONOut, "json", "", "write the figures as JSON to this file")
	fs.BoolVar(&cfg.SkipBare, "skip-bare", false, "skip the bare-broker half of the ceiling (always skipped with -broker mosquitto)")
	fs.Func("scenarios", "comma-separated scenarios to run after enrol and connect (rollout, policy, fire, stream, ceiling; default all; fire brings rollout, whose schedules it fires)", func(v string) error {
		for _, n := range strings.Split(v, ",") {
			if !slices.Contains(scenarioOrder, n) {
				return fmt.Errorf("unknown scenario %q (want one of %s)", n, strings.Join(scenarioOrder, ", "))
			}
			cfg.Scenarios = append(cfg.Scenarios, n)
		}
		// The fire storm fires the schedule the rollout installs: alone it
		// only failed on its first fire ("bad schedule_id").
		if slices.Contains(cfg.Scenarios, "fire") && !slices.Contains(cfg.Scenarios, "rollout") {
			cfg.Scenarios = append(cfg.Scenarios, "rollout")
		}
		return nil
	})
	fs.DurationVar(&cfg.Idle, "idle", 0, "after the connect storm, let the connected fleet rest this long and report the server's memory then (0: skip)")
	fs.IntVar(&cfg.PolicyEdits, "policy-edits", 1, "policy scenario: edits timed one after another (the figures are the median edit's)")
	fs.StringVar(&cfg.PprofDir, "pprof-dir", "", "build the server with a pprof listener (build overlay, no source change) and save a CPU and heap profile per scenario here")
	fs.DurationVar(&cfg.PprofCPU, "pprof-cpu", 10*time.Second, "CPU profile length per scenario with -pprof-dir")
	simProfile := fs.String("sim-cpuprofile", "", "write the simulator's own CPU profile here")
	_ = fs.Parse(os.Args[1:])
	if err := checkJSONOut(cfg.JSONOut, os.Getenv(benchout.EnvDir), benchName(cfg.Broker, cfg.Agents)); err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
		os.Exit(2)
	}
	if *simProfile != "" {
		f, err := os.Create(*simProfile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", err)
			os.Exit(1)
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", err)
			os.Exit(1)
		}
		defer pprof.StopCPUProfile()
	}
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := run(ctx, cfg)
	if rep != nil && err != nil {
		rep.addError(err.Error())
	}
	if rep != nil {
		rep.LoadEnd = benchout.LoadAvg()
		rep.printTable(os.Stdout)
		if cfg.JSONOut != "" {
			if werr := writeJSON(cfg.JSONOut, rep); werr != nil {
				fmt.Fprintln(os.Stderr, "fleetsim:", werr)
			}
		}
		// make bench's one table (cmd/benchtable) reads these; nothing
		// is written unless RM_BENCH_OUT is set.
		if werr := benchout.Write(rep.benchName(), rep.figures(commandLine(os.Args[1:]))); werr != nil {
			fmt.Fprintln(os.Stderr, "fleetsim:", werr)
		}
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "fleetsim:", err)
	}
	if rep != nil && len(rep.Errors) > 0 || err != nil {
		pprof.StopCPUProfile()
		os.Exit(1)
	}
}

// commandLine is the command that reproduces this run, its arguments
// quoted where the shell needs it.
func commandLine(args []string) string {
	parts := []string{"go run ./cmd/fleetsim"}
	for _, a := range args {
		if a == "" || strings.ContainsAny(a, " \t'\"$\\*?;&|<>()") {
			a = "'" + strings.ReplaceAll(a, "'", `'\''`) + "'"
		}
		parts = append(parts, a)
	}
	return strings.Join(parts, " ")
}

func writeJSON(path string, rep *report) error {
	b, err := json.MarshalIndent(rep, "", "  ")
	if err != nil {
		return fmt.Errorf("encode report: %w", err)
	}
	if dir := filepath.Dir(path); dir != "." {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			return fmt.Errorf("write report: %w", err)
		}
	}
	if err := os.WriteFile(path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("write report: %w", err)
	}
	return nil
}
