package main

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"os"
	"testing"
	"time"

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
