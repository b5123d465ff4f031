package main

import (
	"fmt"
	"io"
	"runtime"
	"strings"
	"sync"
	"text/tabwriter"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
	"github.com/restic-manager/restic-manager/internal/harness"
)

type enrolFigures struct {
	Hosts     int     `json:"hosts"`
	Repos     int     `json:"repos"`
	Seconds   float64 `json:"seconds"`
	PerSecond float64 `json:"per_s"`
}

type connectFigures struct {
	Agents        int     `json:"agents"`
	Connected     int     `json:"connected"`
	Failed        int     `json:"failed"`
	Retries       int     `json:"retries"`
	ConnackAllS   float64 `json:"connack_all_s"`
	Online        int     `json:"online"`
	OnlineAllS    float64 `json:"online_all_s"` // every status PUBACK: stored by the console
	StoredAllS    float64 `json:"stored_all_s"` // external broker: every status counted as ingested by the console
	ConsoleOnline int     `json:"console_online"`
	ConsoleAllS   float64 `json:"console_all_s"` // the console's metrics count every host online
}

type rolloutFigures struct {
	Hosts       int     `json:"hosts"`
	PutFailed   int     `json:"put_failed"`
	PutsS       float64 `json:"puts_s"`
	Desired     int     `json:"desired_received"`
	DesiredAllS float64 `json:"desired_all_s"`
	Acked       int     `json:"acks_stored"`
	PubackAllS  float64 `json:"puback_all_s"` // first PUT → last report's PUBACK (the broker's, with an external one)
	AckAllS     float64 `json:"ack_all_s"`    // first PUT → last report stored
	APIVerified int     `json:"api_verified_hosts"`
}

// idleFigures: the server's memory with every agent connected and at rest,
// from its Go runtime metrics (where the RSS goes).
type idleFigures struct {
	HeapInuseMiB float64 `json:"heap_inuse_mib"`
	StackMiB     float64 `json:"stack_inuse_mib"`
	Goroutines   int     `json:"goroutines"`
}

// policyFigures: one edit of a policy matching every host.
type policyFigures struct {
	Hosts        int     `json:"hosts"`
	Changed      int     `json:"changed"` // hosts whose schedules the edit changed
	EditS        float64 `json:"edit_s"`  // the PUT, with its batched rollout
	Desired      int     `json:"desired_received"`
	DesiredAllS  float64 `json:"desired_all_s"`
	Acked        int     `json:"acks_stored"`
	PubackAllS   float64 `json:"puback_all_s"` // PUT → last report's PUBACK
	AckAllS      float64 `json:"ack_all_s"`    // PUT → last report stored
	CPUMsPerHost float64 `json:"server_cpu_ms_per_host"`
	// With -policy-edits N: every edit's AckAllS, fastest first (the
	// figures above are the median edit's).
	AckAllRunsS []float64 `json:"ack_all_runs_s,omitempty"`
}

type fireFigures struct {
	Fires           int     `json:"fires"`
	Commands        int     `json:"commands"`
	Latency         dist    `json:"fire_to_command"`
	AllCommandsS    float64 `json:"all_commands_s"`
	AcceptedFires   int     `json:"accepted_fires"`
	Duplicates      int     `json:"duplicates_sent"`
	DuplicatesSeen  int     `json:"duplicates_counted"`
	ExtraCommands   int     `json:"extra_commands"`
	JobsForFires    int     `json:"jobs_for_fires"`
	HostsWithOneJob int     `json:"hosts_with_one_job"`
	JobsListed      int     `json:"jobs_listed"`
	CompleteS       float64 `json:"complete_s"`
}

type streamFigures struct {
	Jobs             int     `json:"jobs"`
	DurationS        float64 `json:"duration_s"`
	RatePerJob       float64 `json:"rate_per_job"`
	CreateToCommand  dist    `json:"create_to_command"`
	OfferedPerSecond float64 `json:"offered_per_s"`
	ProgressSent     int     `json:"progress_sent"`
	ProgressIngested int     `json:"progress_ingested"`
	IngestPerSecond  float64 `json:"ingested_per_s"`
	PublishAck       dist    `json:"publish_to_ack"`
	ResultsS         float64 `json:"results_s"`
	ResultsIngested  int     `json:"results_ingested"`
	ProgressLost     int     `json:"jobs_with_progress_lost"`
	ResultsMissing   int     `json:"results_missing"`
	SSEStreams       int     `json:"sse_streams"`
	SSEEvents        int     `json:"sse_events"`
	SSEResults       int     `json:"sse_results"`
	SSE              dist    `json:"publish_to_sse"`
}

type ceilingFigures struct {
	Publishers       int         `json:"publishers"`
	FloodS           float64     `json:"flood_s"`
	ConsoleMsgs      int         `json:"console_msgs"`
	ConsolePerSecond float64     `json:"console_msgs_per_s"` // PUBACKs (with an external broker: the broker's)
	StoredS          float64     `json:"stored_s"`           // flood start → all stored by the console
	StoredPerSecond  float64     `json:"stored_per_s"`
	ConsoleIngested  int         `json:"console_ingested"`
	ConsoleLost      int         `json:"console_jobs_with_progress_lost"`
	ResultsMissing   int         `json:"results_missing"`
	Bare             bareFigures `json:"bare"`
	ConsolePctOfBare float64     `json:"console_pct_of_bare"`
}

// report is what a run measured.
type report struct {
	When    time.Time `json:"when"`
	Machine struct {
		CPUs int    `json:"cpus"`
		Go   string `json:"go"`
	} `json:"machine"`
	Config struct {
		Broker       string   `json:"broker"`
		Agents       int      `json:"agents"`
		Jobs         int      `json:"jobs"`
		DurationS    float64  `json:"duration_s"`
		ProgressRate float64  `json:"progress_rate"`
		Publishers   int      `json:"publishers"`
		FloodS       float64  `json:"flood_s"`
		SSESample    int      `json:"sse_sample"`
		Dups         int      `json:"dups"`
		Repos        int      `json:"repos"`
		IdleS        float64  `json:"idle_s,omitempty"`
		ServerEnv    []string `json:"server_env,omitempty"`
		ServerArgs   []string `json:"server_args,omitempty"`
	} `json:"config"`
	Enrol          enrolFigures             `json:"enrol"`
	Connect        connectFigures           `json:"connect_storm"`
	Rollout        rolloutFigures           `json:"schedule_rollout"`
	Idle           idleFigures              `json:"idle,omitzero"`
	Policy         policyFigures            `json:"policy_rollout"`
	Fire           fireFigures              `json:"fire_storm"`
	Stream         streamFigures            `json:"progress_stream"`
	Ceiling        ceilingFigures           `json:"ceiling"`
	ServerStart    harness.Stats            `json:"server_start"`
	Server         map[string]harness.Stats `json:"server_after"` // by scenario
	ServerEnd      harness.Stats            `json:"server_end"`
	BrokerStart    harness.Stats            `json:"broker_start,omitzero"` // an external broker's process
	Broker         map[string]harness.Stats `json:"broker_after,omitempty"`
	BrokerEnd      harness.Stats            `json:"broker_end,omitzero"`
	Simulator      harness.Stats            `json:"simulator"`
	StoreMiB       float64                  `json:"store_mib"`
	BrokerStoreMiB float64                  `json:"broker_store_mib"`
	LoadStart      float64                  `json:"load_start"` // one-minute load average, -1 unknown
	LoadEnd        float64                  `json:"load_end"`
	ServerLog      string                   `json:"server_log,omitempty"`

	mu     sync.Mutex
	Errors []string `json:"errors"`
}

func newReport(cfg config) *report {
	r := &report{When: time.Now().UTC(), Server: map[string]harness.Stats{}, Broker: map[string]harness.Stats{}, Errors: []string{}}
	r.LoadStart, r.LoadEnd = benchout.LoadAvg(), -1
	r.Machine.CPUs = runtime.NumCPU()
	r.Machine.Go = runtime.Version()
	c := &r.Config
	c.Broker, c.Agents, c.Jobs, c.DurationS, c.ProgressRate = cfg.Broker, cfg.Agents, cfg.Jobs, cfg.Duration.Seconds(), cfg.ProgressRate
	c.Publishers, c.FloodS, c.SSESample, c.Dups, c.Repos = cfg.Publishers, cfg.Flood.Seconds(), cfg.SSESample, cfg.Dups, cfg.Repos
	c.ServerEnv, c.ServerArgs, c.IdleS = cfg.ServerEnv, cfg.ServerArgs, cfg.Idle.Seconds()
	return r
}

func (r *report) addError(s string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.Errors = append(r.Errors, s)
}

func (r *report) printTable(w io.Writer) {
	c := r.Config
	fmt.Fprintf(w, "\nfleetsim (%s broker): %d agents, %d repos, %d streaming jobs × %.0fs at %.1f/s, %d flood publishers × %.0fs (%d CPUs, %s)\n\n",
		c.Broker, c.Agents, c.Repos, c.Jobs, c.DurationS, c.ProgressRate, c.Publishers, c.FloodS, r.Machine.CPUs, r.Machine.Go)
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	row := func(scn, fig, val, target string) { fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", scn, fig, val, target) }
	row("scenario", "figure", "value", "target")
	row("--------", "------", "-----", "------")
	e := r.Enrol
	row("enrol", "hosts enrolled (POST /enroll with a key)", fmt.Sprintf("%d in %.1fs (%.0f/s)", e.Hosts, e.Seconds, e.PerSecond), "")
	ext := c.Broker == brokerMosquitto
	// Which figure says "stored by the console": with an external broker
	// a PUBACK is the broker's alone.
	pubackNote := ""
	if ext {
		pubackNote = " (the broker's)"
	}
	cn := r.Connect
	row("1 connect storm", "CONNACK for all", fmt.Sprintf("%d/%d in %.2fs (%d retries)", cn.Connected, cn.Agents, cn.ConnackAllS, cn.Retries), "")
	if ext {
		row("", "status PUBACK for all (the broker's)", fmt.Sprintf("%d in %.2fs", cn.Online, cn.OnlineAllS), "")
	} else {
		row("", "online stored for all (status PUBACK)", fmt.Sprintf("%d in %.2fs", cn.Online, cn.OnlineAllS), targetOnline.String())
	}
	if ext {
		row("", "console stored every status (ingest counter)", fmt.Sprintf("at %.2fs", cn.StoredAllS), targetOnline.String())
	}
	if ext {
		row("", "API lists all online", fmt.Sprintf("%d at %.2fs", cn.ConsoleOnline, cn.ConsoleAllS), "")
	} else {
		row("", "console counts all online (/metrics)", fmt.Sprintf("%d at %.2fs", cn.ConsoleOnline, cn.ConsoleAllS), "")
	}
	policyTarget, fireTarget, rssTarget := r.targets()
	r.procRow(row, "connect", rssTarget.String()+" RSS")
	// Scenarios left out with -scenarios have no figures.
	ran := func(name string) bool { _, ok := r.Server[name]; return ok }
	if ran("idle") {
		id := r.Server["idle"]
		row("1b idle", fmt.Sprintf("server after %.0fs at rest", c.IdleS), fmt.Sprintf("RSS %.0f MiB (%.1f KiB per agent over the start), heap %.0f MiB, stacks %.0f MiB, %d goroutines",
			id.RSSMiB, (id.RSSMiB-r.ServerStart.RSSMiB)*1024/float64(max(1, c.Agents)), r.Idle.HeapInuseMiB, r.Idle.StackMiB, r.Idle.Goroutines), rssTarget.String()+" RSS")
	}
	if ran("rollout") {
		ro := r.Rollout
		row("2 schedule rollout", "PUT to every host", fmt.Sprintf("%d in %.2fs", ro.Hosts-ro.PutFailed, ro.PutsS), "")
		row("", "desired received by all", fmt.Sprintf("%d at %.2fs", ro.Desired, ro.DesiredAllS), "")
		if ext {
			row("", "first PUT → every report's PUBACK"+pubackNote, fmt.Sprintf("%.2fs", ro.PubackAllS), "")
		}
		row("", "first PUT → every ack stored", fmt.Sprintf("%d at %.2fs (API checked %d)", ro.Acked, ro.AckAllS, ro.APIVerified), targetRollout.String())
		r.procRow(row, "rollout", "")
	}
	if ran("policy") {
		po := r.Policy
		row("2b policy edit", "PUT /policies (batched rollout)", fmt.Sprintf("%d hosts changed in %.2fs", po.Changed, po.EditS), "")
		if ext {
			row("", "edit → every report's PUBACK"+pubackNote, fmt.Sprintf("%.2fs", po.PubackAllS), "")
		}
		row("", "edit → every ack stored", fmt.Sprintf("%d at %.2fs (desired by all at %.2fs)", po.Acked, po.AckAllS, po.DesiredAllS), policyTarget.String())
		if len(po.AckAllRunsS) > 1 {
			row("", fmt.Sprintf("median of %d edits, each edit → every ack", len(po.AckAllRunsS)), fmt.Sprintf("%.2f s", po.AckAllRunsS), "")
		}
		row("", "server CPU per host", fmt.Sprintf("%.2f ms", po.CPUMsPerHost), "")
		r.procRow(row, "policy", "")
	}
	if ran("fire") {
		fi := r.Fire
		row("3 fire storm", "fires → commands received", fmt.Sprintf("%d → %d in %.2fs", fi.Fires, fi.Commands, fi.AllCommandsS), fireTarget.String())
		row("", "fire → command latency", distStr(fi.Latency), "")
		row("", "jobs per fire (API)", fmt.Sprintf("%d hosts with exactly 1; %d jobs for %d fires", fi.HostsWithOneJob, fi.JobsForFires, fi.Fires), "exactly 1")
		row("", "duplicate fires", fmt.Sprintf("%d sent, %d counted, %d extra commands", fi.Duplicates, fi.DuplicatesSeen, fi.ExtraCommands), "0 extra")
		row("", "fired jobs completed (progress+result stored)", fmt.Sprintf("%.2fs", fi.CompleteS), "")
		r.procRow(row, "fire", "")
	}
	if ran("stream") {
		st := r.Stream
		row("4 progress stream", "job create → command", distStr(st.CreateToCommand), "")
		row("", "progress ingested", fmt.Sprintf("%d of %d sent, %.0f/s (offered %.0f/s)", st.ProgressIngested, st.ProgressSent, st.IngestPerSecond, st.OfferedPerSecond), "")
		if ext {
			row("", "publish → PUBACK (the broker's)", distStr(st.PublishAck), "")
		} else {
			row("", "publish → PUBACK (stored)", distStr(st.PublishAck), "")
		}
		row("", "publish → SSE event", distStr(st.SSE)+fmt.Sprintf(" (%d streams, %d events)", st.SSEStreams, st.SSEEvents), "p99 "+targetSSEP99.String())
		row("", "lost", fmt.Sprintf("%d jobs lost progress, %d results missing (%d results in %.2fs)", st.ProgressLost, st.ResultsMissing, st.ResultsIngested, st.ResultsS), "none")
		r.procRow(row, "stream", "")
	}
	if ran("ceiling") {
		ce := r.Ceiling
		row("5 ceiling", "console: QoS-1 progress acked", fmt.Sprintf("%.0f msg/s (%d msgs, %d ingested, %d jobs lost)", ce.ConsolePerSecond, ce.ConsoleMsgs, ce.ConsoleIngested, ce.ConsoleLost), "")
		if ext {
			row("", "console: flood start → all stored", fmt.Sprintf("%.0f msg/s (%.2fs)", ce.StoredPerSecond, ce.StoredS), "")
			row("", "bare broker", "skipped with an external broker", "")
		} else {
			row("", "bare broker, same load", fmt.Sprintf("%.0f msg/s (%d msgs, %d counted, RSS %.0f MiB)", ce.Bare.PerSecond, ce.Bare.Msgs, ce.Bare.Counted, ce.Bare.Process.RSSMiB), "")
			row("", "console / bare", fmt.Sprintf("%.0f %%", ce.ConsolePctOfBare), targetCeiling.String())
		}
		r.procRow(row, "ceiling", "")
	}
	row("end", "store size (du DATA/store)", fmt.Sprintf("%.1f MiB (broker %.1f MiB)", r.StoreMiB, r.BrokerStoreMiB), "")
	row("", "server at end", fmt.Sprintf("RSS %.0f MiB, peak %.0f MiB, CPU %.1fs", r.ServerEnd.RSSMiB, r.ServerEnd.HWMMiB, r.ServerEnd.CPUSecs), "")
	if ext {
		row("", "mosquitto at end", fmt.Sprintf("RSS %.0f MiB, peak %.0f MiB, CPU %.1fs", r.BrokerEnd.RSSMiB, r.BrokerEnd.HWMMiB, r.BrokerEnd.CPUSecs), "")
	}
	if con, ok := r.Server["connect"]; ok && c.Agents > 0 {
		per := func(start, after harness.Stats) string {
			return fmt.Sprintf("%.1f KiB RSS", (after.RSSMiB-start.RSSMiB)*1024/float64(c.Agents))
		}
		v := "server " + per(r.ServerStart, con)
		if ext {
			v += ", mosquitto " + per(r.BrokerStart, r.Broker["connect"])
		}
		row("", "per connected agent (after the storm − at start)", v, "")
	}
	row("", "simulator", fmt.Sprintf("RSS %.0f MiB, CPU %.1fs", r.Simulator.RSSMiB, r.Simulator.CPUSecs), "")
	tw.Flush()
	if len(r.Errors) > 0 {
		fmt.Fprintf(w, "\nERRORS:\n  %s\n", strings.Join(r.Errors, "\n  "))
	} else {
		fmt.Fprintln(w, "\nno errors: every host online, every ack stored, one job per fire, no progress or result lost")
	}
}

// scenarioOrder is the order the scenarios run in (for CPU per scenario).
var scenarioOrder = []string{"enrol", "connect", "idle", "rollout", "policy", "fire", "stream", "ceiling"}

// procRow prints the server's (and an external broker's) memory after a
// scenario and the CPU the scenario cost it.
func (r *report) procRow(row func(a, b, c, d string), name, target string) {
	line := func(who string, m map[string]harness.Stats) {
		p, ok := m[name]
		if !ok {
			return
		}
		// The CPU total after the scenario that ran before this one.
		prev := 0.0
		for _, n := range scenarioOrder {
			if n == name {
				break
			}
			if q, ok := m[n]; ok {
				prev = q.CPUSecs
			}
		}
		row("", who+" after", fmt.Sprintf("RSS %.0f MiB (peak %.0f), CPU %.1fs in this scenario, %.1fs total", p.RSSMiB, p.HWMMiB, p.CPUSecs-prev, p.CPUSecs), target)
		target = ""
	}
	line("server", r.Server)
	line("mosquitto", r.Broker)
}

func distStr(d dist) string {
	if d.N == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %.1f ms, p99 %.1f ms, max %.1f ms (n=%d)", d.P50Ms, d.P99Ms, d.MaxMs, d.N)
}
