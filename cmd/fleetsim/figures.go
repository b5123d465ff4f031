package main

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/restic-manager/restic-manager/internal/benchout"
)

// The targets at 10,000 agents (issues 9, 15 and 21; docs/scale.md). They
// are defined here only: the printed table and the figures written for
// `make bench`'s table (internal/benchout) both read them.
var (
	targetOnline          = benchout.AtMost(10, "s")    // every host online stored
	targetRollout         = benchout.AtMost(10, "s")    // per-host schedule PUTs → every ack stored
	targetPolicyEmbedded  = benchout.AtMost(3, "s")     // policy edit → every ack stored
	targetPolicyMosquitto = benchout.AtMost(5, "s")     // the same on an external broker
	targetFireEmbedded    = benchout.AtMost(15, "s")    // fires → every command received
	targetFireMosquitto   = benchout.AtMost(10, "s")    // the same on an external broker
	targetRSSEmbedded     = benchout.AtMost(400, "MB")  // server RSS after the connect storm
	targetRSSMosquitto    = benchout.AtMost(150, "MB")  // console RSS, the broker apart
	targetSSEP99          = benchout.AtMost(250, "ms")  // publish → SSE event p99
	targetCeiling         = benchout.AtLeastPercent(75) // console ingest ÷ bare broker, same load
	targetNone            = benchout.AtMost(0, "")      // extra commands, lost progress, missing results
)

// targets picks the broker's targets.
func (r *report) targets() (policy, fire, rss *benchout.Target) {
	if r.Config.Broker == brokerMosquitto {
		return targetPolicyMosquitto, targetFireMosquitto, targetRSSMosquitto
	}
	return targetPolicyEmbedded, targetFireEmbedded, targetRSSEmbedded
}

// benchName is the run's benchout file name: one per broker and size, so
// make bench's runs sit side by side.
func (r *report) benchName() string { return benchName(r.Config.Broker, r.Config.Agents) }

func benchName(broker string, agents int) string {
	if broker == "" {
		broker = brokerEmbedded
	}
	return fmt.Sprintf("fleetsim-%s-%d", broker, agents)
}

// checkJSONOut refuses a -json file the figures for RM_BENCH_OUT would
// overwrite (the same name in the same directory): the run's full report
// would be lost at its end.
func checkJSONOut(jsonOut, benchDir, name string) error {
	if jsonOut == "" || benchDir == "" {
		return nil
	}
	a, err := filepath.Abs(jsonOut)
	if err != nil {
		return fmt.Errorf("-json %s: %w", jsonOut, err)
	}
	b, err := filepath.Abs(filepath.Join(benchDir, name+".json"))
	if err != nil {
		return fmt.Errorf("%s: %w", benchout.EnvDir, err)
	}
	if a == b {
		return fmt.Errorf("-json %s is where the figures for %s go: pick another name", jsonOut, benchout.EnvDir)
	}
	return nil
}

// figures are the run's headline figures in benchout's form, each with
// its target (the same values the printed table shows) and the bare
// broker's rate as the ceiling's reference when it ran. A scenario that
// did not run gives no figures; one that failed is marked, since its
// figures stop where it failed.
func (r *report) figures(command string) []benchout.Figure {
	c := r.Config
	load := &benchout.Load{Start: r.LoadStart, End: r.LoadEnd}
	if r.LoadStart < 0 || r.LoadEnd < 0 {
		load = nil
	}
	prefix := fmt.Sprintf("fleetsim.%s-%d.", c.Broker, c.Agents)
	label := fmt.Sprintf("%s, %d agents: ", c.Broker, c.Agents)
	var figs []benchout.Figure
	add := func(scenario, id, what string, v float64, unit string, t *benchout.Target, ref *benchout.Reference) {
		if _, ran := r.Server[scenario]; !ran {
			return
		}
		f := benchout.Figure{ID: prefix + id, Group: benchout.GroupSimulator, What: label + what, Value: v, Unit: unit,
			Target: t, Reference: ref, Load: load, Command: command}
		for _, e := range r.Errors {
			if strings.HasPrefix(e, scenario+":") {
				f.Note = "scenario failed: see fleetsim's errors"
				break
			}
		}
		figs = append(figs, f)
	}
	ext := c.Broker == brokerMosquitto
	policy, fire, rss := r.targets()
	if ext {
		add("connect", "online_s", "console stored every status", r.Connect.StoredAllS, "s", targetOnline, nil)
	} else {
		add("connect", "online_s", "every host online stored", r.Connect.OnlineAllS, "s", targetOnline, nil)
	}
	add("connect", "server_rss_MB", "console RSS after the connect storm", benchout.MiBToMB(r.Server["connect"].RSSMiB), "MB", rss, nil)
	add("idle", "server_idle_rss_MB", fmt.Sprintf("console RSS with every agent connected, after %.0f s at rest", c.IdleS), benchout.MiBToMB(r.Server["idle"].RSSMiB), "MB", rss, nil)
	add("rollout", "rollout_s", "per-host schedule PUTs → every ack stored", r.Rollout.AckAllS, "s", targetRollout, nil)
	add("policy", "policy_put_s", "policy edit: PUT (batched rollout)", r.Policy.EditS, "s", nil, nil)
	add("policy", "policy_s", "policy edit → every ack stored", r.Policy.AckAllS, "s", policy, nil)
	add("policy", "policy_cpu_ms_per_host", "policy edit: server CPU per host", r.Policy.CPUMsPerHost, "ms", nil, nil)
	add("fire", "fire_s", "fire storm → every command received", r.Fire.AllCommandsS, "s", fire, nil)
	add("fire", "fire_extra_commands", "extra commands for duplicate fires", float64(r.Fire.ExtraCommands), "", targetNone, nil)
	add("stream", "sse_p99_ms", "progress publish → SSE event p99", r.Stream.SSE.P99Ms, "ms", targetSSEP99, nil)
	add("stream", "progress_lost_jobs", "jobs that lost progress or a result", float64(r.Stream.ProgressLost+r.Stream.ResultsMissing), "", targetNone, nil)
	ce := r.Ceiling
	switch {
	case ext:
		// The PUBACKs are Mosquitto's: what the console kept up with is
		// the stored rate; there is no bare broker to hold it against.
		add("ceiling", "ingest_msgs_per_s", "console ingest of a QoS-1 progress flood (stored)", ce.StoredPerSecond, "msg/s", nil, nil)
	case ce.Bare.PerSecond > 0:
		add("ceiling", "ingest_msgs_per_s", "console ingest of a QoS-1 progress flood", ce.ConsolePerSecond, "msg/s", targetCeiling,
			&benchout.Reference{What: "bare broker, same load", Value: ce.Bare.PerSecond, Unit: "msg/s"})
	default:
		add("ceiling", "ingest_msgs_per_s", "console ingest of a QoS-1 progress flood (bare broker skipped)", ce.ConsolePerSecond, "msg/s", targetCeiling, nil)
	}
	if _, ran := r.Server["connect"]; ran {
		add("connect", "server_peak_MB", "console peak RSS over the run", benchout.MiBToMB(r.ServerEnd.HWMMiB), "MB", nil, nil)
		if ext {
			add("connect", "mosquitto_peak_MB", "Mosquitto peak RSS over the run", benchout.MiBToMB(r.BrokerEnd.HWMMiB), "MB", nil, nil)
		}
		add("connect", "store_MiB", "store size at the end", r.StoreMiB, "MiB", nil, nil)
	}
	return figs
}
