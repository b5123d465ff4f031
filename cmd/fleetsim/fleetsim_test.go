package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// TestMain lets the test binary stand in for fleetsim when the simulator
// re-executes itself as the bare broker.
func TestMain(m *testing.M) {
	if os.Getenv(bareEnv) == "1" {
		args := os.Args[1:]
		if len(args) > 0 && args[0] == "bare-broker" {
			args = args[1:]
		}
		if err := bareBrokerMain(args); err != nil {
			fmt.Fprintln(os.Stderr, "bare-broker:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// TestFleetSmall runs every scenario against a real server process at a
// small size and checks what an operator would notice: every host online,
// every schedule report stored, exactly one job per fire (duplicates
// included), no progress or result lost, and a working ceiling run.
// Timings are printed, never asserted.
func TestFleetSmall(t *testing.T) { testFleetSmall(t, brokerEmbedded) }

// TestFleetSmallMosquitto is the same with the console on Mosquitto 2
// (`make mosquitto`) through --broker-url: there a PUBACK is the broker's,
// and the simulator waits for the console's counters instead (about 12 s).
func TestFleetSmallMosquitto(t *testing.T) {
	if _, err := testenv.MosquittoBin(); err != nil {
		t.Fatal(err)
	}
	testFleetSmall(t, brokerMosquitto)
}

func testFleetSmall(t *testing.T, broker string) {
	cfg := defaultConfig()
	cfg.Broker = broker
	cfg.Agents, cfg.Jobs, cfg.Publishers, cfg.SSESample, cfg.Dups = 20, 6, 8, 4, 4
	cfg.Duration, cfg.Flood = 3*time.Second, 2*time.Second
	cfg.Timeout, cfg.SettleTimeout = time.Minute, 2*time.Second
	cfg.Workers, cfg.HTTPParallel = 32, 8
	cfg.Log = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	rep, err := run(ctx, cfg)
	if rep != nil {
		var b bytes.Buffer
		rep.printTable(&b)
		t.Log(b.String())
	}
	if err != nil {
		t.Fatal(err)
	}
	if len(rep.Errors) > 0 {
		t.Fatalf("errors: %v", rep.Errors)
	}
	n := cfg.Agents
	check := func(what string, got, want int) {
		t.Helper()
		if got != want {
			t.Errorf("%s: %d, want %d", what, got, want)
		}
	}
	check("hosts enrolled", rep.Enrol.Hosts, n)
	check("agents online (status stored)", rep.Connect.Online, n)
	check("agents online as the console counts them", rep.Connect.ConsoleOnline, n)
	check("schedule reports stored", rep.Rollout.Acked, n)
	check("hosts whose applied version the API shows", rep.Rollout.APIVerified, n)
	check("hosts the policy edit changed", rep.Policy.Changed, n)
	check("agents that received the edited policy", rep.Policy.Desired, n)
	check("reports of the edited policy stored", rep.Policy.Acked, n)
	check("commands for fires", rep.Fire.Commands, n)
	check("hosts with exactly one job for the fire", rep.Fire.HostsWithOneJob, n)
	check("jobs for the fires", rep.Fire.JobsForFires, n)
	check("duplicate fires the console recognised", rep.Fire.DuplicatesSeen, cfg.Dups)
	check("commands beyond one per fire", rep.Fire.ExtraCommands, 0)
	check("streamed jobs that lost progress", rep.Stream.ProgressLost, 0)
	check("streamed results missing", rep.Stream.ResultsMissing, 0)
	// The console may add jobs of its own (health refreshes), never fewer.
	atLeast := func(what string, got, want int) {
		t.Helper()
		if got < want {
			t.Errorf("%s: %d, want at least %d", what, got, want)
		}
	}
	atLeast("progress ingested", rep.Stream.ProgressIngested, rep.Stream.ProgressSent)
	atLeast("results ingested", rep.Stream.ResultsIngested, cfg.Jobs)
	check("event streams that saw the result", rep.Stream.SSEResults, cfg.SSESample)
	check("flood jobs that lost progress", rep.Ceiling.ConsoleLost, 0)
	check("flood results missing", rep.Ceiling.ResultsMissing, 0)
	atLeast("flood messages ingested", rep.Ceiling.ConsoleIngested, rep.Ceiling.ConsoleMsgs)
	if rep.Stream.ProgressSent < cfg.Jobs*int(cfg.Duration.Seconds()) {
		t.Errorf("only %d progress messages sent by %d jobs in %s", rep.Stream.ProgressSent, cfg.Jobs, cfg.Duration)
	}
	if rep.Stream.SSE.N == 0 {
		t.Error("no progress event matched on the SSE streams")
	}
	if broker == brokerMosquitto {
		if rep.Broker["connect"].RSSMiB <= 0 || rep.BrokerEnd.CPUSecs <= 0 {
			t.Errorf("mosquitto's RSS/CPU not measured: %+v", rep.BrokerEnd)
		}
		if rep.Ceiling.ConsoleMsgs == 0 || rep.Ceiling.StoredPerSecond <= 0 {
			t.Errorf("ceiling: console %d msgs, stored %.0f/s", rep.Ceiling.ConsoleMsgs, rep.Ceiling.StoredPerSecond)
		}
	} else if rep.Ceiling.ConsoleMsgs == 0 || rep.Ceiling.Bare.Msgs == 0 || rep.Ceiling.Bare.Counted < rep.Ceiling.Bare.Msgs {
		t.Errorf("ceiling: console %d msgs, bare %d msgs (%d counted)", rep.Ceiling.ConsoleMsgs, rep.Ceiling.Bare.Msgs, rep.Ceiling.Bare.Counted)
	}
	if rep.StoreMiB <= 0 {
		t.Error("store size not measured")
	}
}

// TestFigures checks the figures written for make bench's table: the
// broker's targets, the bare broker as the ceiling's reference only when
// it ran, no figures for scenarios that did not run, a failed scenario
// marked, and the printed table showing the same targets.
func TestFigures(t *testing.T) {
	cfg := defaultConfig()
	cfg.Agents = 1000
	r := newReport(cfg)
	r.LoadStart, r.LoadEnd = 0.5, 1.5
	for _, n := range []string{"enrol", "connect", "rollout", "policy", "fire", "stream", "ceiling"} {
		r.Server[n] = harness.Stats{RSSMiB: 100}
	}
	r.Connect.OnlineAllS, r.Policy.AckAllS, r.Fire.AllCommandsS = 1.5, 4, 12
	r.Ceiling.ConsolePerSecond, r.Ceiling.Bare.PerSecond = 8000, 10000
	r.addError("fire: one job missing")
	byID := func(figs []benchout.Figure) map[string]benchout.Figure {
		m := map[string]benchout.Figure{}
		for _, f := range figs {
			m[strings.TrimPrefix(f.ID, "fleetsim.")] = f
		}
		return m
	}
	figs := byID(r.figures("go run ./cmd/fleetsim -agents 1000"))
	if r.benchName() != "fleetsim-embedded-1000" {
		t.Errorf("name %q", r.benchName())
	}
	online := figs["embedded-1000.online_s"]
	if online.Value != 1.5 || online.Target != targetOnline || online.Load == nil || online.Load.End != 1.5 || online.Command != "go run ./cmd/fleetsim -agents 1000" {
		t.Errorf("online: %+v", online)
	}
	if p := figs["embedded-1000.policy_s"]; p.Target != targetPolicyEmbedded {
		t.Errorf("policy target %v", p.Target)
	} else if met, _, _, _ := p.Check(); met {
		t.Errorf("policy edit of 4 s met %v", p.Target)
	}
	if rss := figs["embedded-1000.server_rss_MB"]; rss.Value < 104.8 || rss.Value > 104.9 || rss.Target != targetRSSEmbedded {
		t.Errorf("rss: %+v", rss)
	}
	ce := figs["embedded-1000.ingest_msgs_per_s"]
	if met, pct, _, ok := ce.Check(); !ok || !met || pct != 80 {
		t.Errorf("ceiling %+v: met %v at %v %%", ce, met, pct)
	}
	if f := figs["embedded-1000.fire_s"]; !strings.Contains(f.Note, "failed") {
		t.Errorf("failed fire storm not marked: %+v", f)
	}
	if f := figs["embedded-1000.online_s"]; f.Note != "" {
		t.Errorf("connect storm marked: %+v", f)
	}

	// Mosquitto: its targets, no reference; the ceiling, not run, absent.
	r.Config.Broker = brokerMosquitto
	delete(r.Server, "ceiling")
	figs = byID(r.figures("x"))
	if f := figs["mosquitto-1000.fire_s"]; f.Target != targetFireMosquitto {
		t.Errorf("mosquitto fire: %+v", f)
	}
	if _, ok := figs["mosquitto-1000.ingest_msgs_per_s"]; ok {
		t.Error("a figure of a scenario that did not run")
	}
	var buf bytes.Buffer
	r.printTable(&buf)
	for _, want := range []string{"≤ 150 MB RSS", "≤ 5 s", "≤ 10 s"} {
		if !strings.Contains(buf.String(), want) {
			t.Errorf("table without %q:\n%s", want, buf.String())
		}
	}
}

func TestCheckJSONOut(t *testing.T) {
	dir := t.TempDir()
	if err := checkJSONOut(dir+"/x/../fleetsim-embedded-10.json", dir, benchName("", 10)); err == nil {
		t.Error("-json on the figures' file accepted")
	}
	for _, c := range [][2]string{{dir + "/fleetsim.json", dir}, {"", dir}, {dir + "/fleetsim-embedded-10.json", ""}} {
		if err := checkJSONOut(c[0], c[1], benchName(brokerEmbedded, 10)); err != nil {
			t.Errorf("%q in %q: %v", c[0], c[1], err)
		}
	}
}

func TestCommandLine(t *testing.T) {
	got := commandLine([]string{"-agents", "10", "-server-env", "GOMEMLIMIT=350MiB", "-server-arg", "--x y", ""})
	want := `go run ./cmd/fleetsim -agents 10 -server-env GOMEMLIMIT=350MiB -server-arg '--x y' ''`
	if got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
