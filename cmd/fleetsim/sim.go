package main

import (
	"cmp"
	"context"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/wire"
)

// sim is one run: the server, the agents and what they observed.
type sim struct {
	cfg    config
	log    *slog.Logger
	srv    *serverProc
	mosq   *mosquittoProc // the external broker; nil with the embedded one
	agents []*simAgent
	repos  []string
	pool   *pool
	rep    *report

	protoErrs errCounter // malformed messages received
	lostErrs  errCounter // connections lost while the run wanted them up
	closing   atomic.Bool

	// Rollout: acks of reported schedules (PUBACK received, so stored).
	desiredSeen atomic.Int64
	acks        atomic.Int64
	// Policy edit: the cron it sets (the sign of the edited state), and the
	// agents that received it and whose report of it was stored.
	policyCron                 atomic.Pointer[string]
	policyDesired, policyAcked atomic.Int64

	// cmdHandler handles received commands for the scenario in progress.
	cmdMu      sync.Mutex
	cmdHandler func(cmdEvent)
}

func (s *sim) fail(err error) { s.protoErrs.add(err) }

func (s *sim) connLost(a *simAgent, err error) {
	if s.closing.Load() {
		return
	}
	s.lostErrs.add(fmt.Errorf("agent %d (%s): connection lost: %w", a.idx, a.id, err))
}

func (s *sim) setHandler(h func(cmdEvent)) {
	s.cmdMu.Lock()
	s.cmdHandler = h
	s.cmdMu.Unlock()
}

// onCommand runs in an agent's receive loop.
func (s *sim) onCommand(ev cmdEvent) {
	s.cmdMu.Lock()
	h := s.cmdHandler
	s.cmdMu.Unlock()
	if h != nil {
		h(ev)
		return
	}
	// Outside a scenario (a job nobody asked for): behave like an agent and
	// finish it at once.
	_ = s.pool.submit(context.Background(), func() { s.finishJob(context.Background(), ev.a, ev.cmd.JobID, 1, time.Now()) })
}

// onDesired answers a desired state with the report a real agent sends
// after applying it; the PUBACK means the console stored it.
func (s *sim) onDesired(a *simAgent, d wire.SchedulesDesired, at time.Time) {
	s.desiredSeen.Add(1)
	edited := false
	if c := s.policyCron.Load(); c != nil {
		for _, e := range d.Schedules {
			if e.Cron == *c {
				edited = true
			}
		}
	}
	if edited && a.policySeen.CompareAndSwap(false, true) {
		s.policyDesired.Add(1)
	}
	_ = s.pool.submit(context.Background(), func() {
		err := a.publish(context.Background(), wire.SchedulesReportedTopic(a.id), &wire.SchedulesReported{
			Version: d.Version, AppliedAt: at.UTC(),
		}, false)
		if err != nil {
			s.fail(err)
			return
		}
		s.acks.Add(1)
		if edited && a.policyAcked.CompareAndSwap(false, true) {
			s.policyAcked.Add(1)
		}
	})
}

// finishJob publishes a job's last progress (seq) and its result.
func (s *sim) finishJob(ctx context.Context, a *simAgent, jobID string, seq int64, started time.Time) error {
	if seq >= 1 {
		p := progressMsg(jobID, seq, started, 100)
		if err := a.publish(ctx, wire.ProgressTopic(a.id, jobID), &p, false); err != nil {
			return err
		}
	}
	res := resultMsg(jobID, started)
	return a.publish(ctx, wire.ResultTopic(a.id, jobID), &res, false)
}

// snapshotIDOf derives a stable made-up snapshot ID from a job ID, so the
// check after the run knows what to expect.
func snapshotIDOf(jobID string) string {
	h := make([]byte, 32)
	copy(h, jobID)
	for i := 0; i < len(jobID); i++ {
		h[i%32] ^= jobID[i] * byte(i+1)
	}
	return hex.EncodeToString(h)
}

func progressMsg(jobID string, seq int64, started time.Time, pct float64) wire.Progress {
	const total = 50 << 30
	p := wire.Progress{
		JobID: jobID, Seq: seq, Percent: pct,
		BytesDone: uint64(pct / 100 * total), BytesTotal: total, FilesDone: uint64(seq * 731), FilesTotal: 200000,
		CurrentFiles: []string{fmt.Sprintf("/data/projects/archive/file-%06d.bin", seq)}, ETASeconds: 100 - pct,
	}
	if seq == 1 {
		p.StartedAt = started.UTC()
	}
	return p
}

func resultMsg(jobID string, started time.Time) wire.Result {
	return wire.Result{
		JobID: jobID, Status: wire.StatusSucceeded, ExitCode: 0, StartedAt: started.UTC(), EndedAt: time.Now().UTC(),
		SnapshotID: snapshotIDOf(jobID),
		Summary:    []byte(`{"files_new":12,"files_changed":3,"files_unmodified":199985,"data_added":1048576,"total_files_processed":200000,"total_bytes_processed":53687091200}`),
	}
}

// parallel runs fn(i) for i in [0,n) on w goroutines and returns the
// errors joined (at most a few kept) and how many failed.
func parallel(ctx context.Context, n, w int, fn func(i int) error) (int, error) {
	var next atomic.Int64
	var ec errCounter
	var wg sync.WaitGroup
	for range min(w, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n || ctx.Err() != nil {
					return
				}
				ec.add(fn(i))
			}
		}()
	}
	wg.Wait()
	cnt, first := ec.take()
	if cnt == 0 {
		return 0, ctx.Err()
	}
	return cnt, fmt.Errorf("%d failed, first: %v", cnt, first)
}

// waitFor polls cond every step until it holds, the timeout passes or the
// server dies; it returns when the condition first held.
func (s *sim) waitFor(ctx context.Context, what string, step time.Duration, cond func() bool) (time.Time, error) {
	start := time.Now()
	deadline := start.Add(s.cfg.Timeout)
	nextLog := start.Add(10 * time.Second)
	for {
		if cond() {
			return time.Now(), nil
		}
		if time.Now().After(nextLog) {
			s.log.Info("still waiting", "for", what, "elapsed", time.Since(start).Round(time.Second))
			nextLog = nextLog.Add(10 * time.Second)
		}
		if err := s.srv.Proc.Exited(); err != nil {
			return time.Time{}, err
		}
		if s.mosq != nil {
			if err := s.mosq.proc.Exited(); err != nil {
				return time.Time{}, fmt.Errorf("mosquitto: %w", err)
			}
		}
		if time.Now().After(deadline) {
			return time.Time{}, fmt.Errorf("timed out after %s waiting for %s", s.cfg.Timeout, what)
		}
		select {
		case <-ctx.Done():
			return time.Time{}, ctx.Err()
		case <-time.After(step):
		}
	}
}

// settle waits until the server's CPU use (and an external broker's)
// falls under 10% of one core (its background work from the last scenario
// done), up to SettleTimeout.
func (s *sim) settle(ctx context.Context) {
	cpu := func() float64 {
		c := harness.ReadStats(s.srv.Proc.Pid()).CPUSecs
		if s.mosq != nil {
			c += harness.ReadStats(s.mosq.proc.Pid()).CPUSecs
		}
		return c
	}
	deadline := time.Now().Add(s.cfg.SettleTimeout)
	prev := cpu()
	for time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(500 * time.Millisecond)
		cur := cpu()
		if cur-prev < 0.05 {
			return
		}
		prev = cur
	}
}

// brokerStats is the external broker's Stats (zero with the embedded one,
// which is inside the server's).
func (s *sim) brokerStats() harness.Stats {
	if s.mosq == nil {
		return harness.Stats{}
	}
	return harness.ReadStats(s.mosq.proc.Pid())
}

// raiseNoFile lifts the open-file limit to its hard maximum: 10,000
// connections need 10,000 descriptors in this process and in the server
// (which inherits it).
func raiseNoFile() (uint64, error) {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("getrlimit: %w", err)
	}
	rl.Cur = rl.Max
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("setrlimit: %w", err)
	}
	return rl.Cur, nil
}

// run performs the whole simulation. The report is returned even when a
// step failed, with what was measured so far.
func run(ctx context.Context, cfg config) (*report, error) {
	if cfg.Log == nil {
		cfg.Log = slog.Default()
	}
	if cfg.Agents < 1 {
		return nil, errors.New("-agents must be at least 1")
	}
	switch cfg.Broker {
	case "":
		cfg.Broker = brokerEmbedded
	case brokerEmbedded, brokerMosquitto:
	default:
		return nil, fmt.Errorf("-broker %q: want %s or %s", cfg.Broker, brokerEmbedded, brokerMosquitto)
	}
	cfg.Jobs = min(max(cfg.Jobs, 1), cfg.Agents)
	cfg.Publishers = min(max(cfg.Publishers, 1), cfg.Agents)
	cfg.SSESample = min(cfg.SSESample, cfg.Jobs)
	cfg.Dups = min(cfg.Dups, cfg.Agents)
	if cfg.Repos <= 0 {
		cfg.Repos = max(1, cfg.Agents/100)
	}
	if cfg.ProgressRate <= 0 {
		cfg.ProgressRate = 2
	}
	rep := newReport(cfg)
	s := &sim{cfg: cfg, log: cfg.Log, rep: rep, pool: newPool(cfg.Workers)}
	defer s.pool.close()

	nofile, err := raiseNoFile()
	if err != nil {
		return rep, err
	}
	if need := uint64(cfg.Agents + 2*cfg.Publishers + 1000); nofile < need {
		s.log.Warn("open-file limit may be too low", "limit", nofile, "need", need)
	}
	work, err := os.MkdirTemp("", "fleetsim-")
	if err != nil {
		return rep, fmt.Errorf("work dir: %w", err)
	}
	if cfg.Keep {
		s.log.Info("keeping the work directory", "dir", work)
	} else {
		defer os.RemoveAll(work)
	}
	bin := cfg.ServerBin
	if bin == "" {
		s.log.Info("building the server")
		if bin, err = buildServer(ctx, work, cfg.PprofDir != ""); err != nil {
			return rep, err
		}
	}
	mqttAddr, serverArgs := "", cfg.ServerArgs
	if cfg.Broker == brokerMosquitto {
		s.mosq, err = startMosquitto(ctx, work)
		defer s.mosq.stop() // deferred first, runs last: after the agents left
		if err != nil {
			return rep, err
		}
		mqttAddr = s.mosq.addr
		serverArgs = append(s.mosq.serverArgs(), serverArgs...)
		rep.BrokerStart = s.brokerStats()
	}
	s.srv, err = startServer(ctx, bin, work, mqttAddr, cfg.PprofDir != "", serverArgs, cfg.ServerEnv, cfg.HTTPParallel)
	defer func() {
		s.closing.Store(true)
		// The server goes first: agents leaving one by one would each
		// have their Will stored, which is not what is measured.
		s.srv.stop()
		for _, a := range s.agents {
			a.close()
		}
		if t := s.srv; t != nil && cfg.Keep {
			s.log.Info("server log", "path", t.Log)
		}
	}()
	if err != nil {
		return rep, err
	}
	rep.ServerStart = harness.ReadStats(s.srv.Proc.Pid())
	steps := []struct {
		name string
		fn   func(context.Context) error
	}{
		{"enrol", s.enrol},
		{"connect", s.connectStorm},
		{"idle", s.idle},
		{"rollout", s.rollout},
		{"policy", s.policyRollout},
		{"fire", s.fireStorm},
		{"stream", s.stream},
		{"ceiling", s.ceiling},
	}
	for _, st := range steps {
		if len(cfg.Scenarios) > 0 && st.name != "enrol" && st.name != "connect" && !slices.Contains(cfg.Scenarios, st.name) {
			continue
		}
		if st.name == "idle" && cfg.Idle <= 0 {
			continue
		}
		s.log.Info("scenario", "name", st.name)
		stopProf := s.profile(ctx, st.name)
		err := st.fn(ctx)
		stopProf()
		rep.Server[st.name] = harness.ReadStats(s.srv.Proc.Pid())
		if s.mosq != nil {
			rep.Broker[st.name] = s.brokerStats()
		}
		if n, first := s.protoErrs.take(); n > 0 {
			rep.addError(fmt.Sprintf("%s: %d bad messages, first: %v", st.name, n, first))
		}
		if n, first := s.lostErrs.take(); n > 0 {
			rep.addError(fmt.Sprintf("%s: %d connections lost, first: %v", st.name, n, first))
		}
		if err != nil {
			rep.addError(fmt.Sprintf("%s: %v", st.name, err))
			if st.name == "enrol" || st.name == "connect" || ctx.Err() != nil || s.srv.Proc.Exited() != nil {
				break // nothing after this can run
			}
		}
		s.settle(ctx)
	}
	rep.StoreMiB = float64(duBytes(filepath.Join(s.srv.Data, "store"))) / (1 << 20)
	rep.BrokerStoreMiB = float64(duBytes(filepath.Join(s.srv.Data, "broker"))) / (1 << 20)
	rep.ServerEnd = harness.ReadStats(s.srv.Proc.Pid())
	rep.BrokerEnd = s.brokerStats()
	rep.Simulator = harness.ReadStats(os.Getpid())
	rep.ServerLog = s.srv.Log
	return rep, nil
}

// profile saves a CPU profile of the start of a scenario and a heap
// profile at its end when -pprof-dir is set.
func (s *sim) profile(ctx context.Context, name string) (stop func()) {
	if s.cfg.PprofDir == "" {
		return func() {}
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := s.srv.profile(ctx, s.cfg.PprofDir, name, s.cfg.PprofCPU); err != nil {
			s.log.Warn("profile", "scenario", name, "error", err)
		}
	}()
	return func() {
		<-done
		if err := s.srv.profile(ctx, s.cfg.PprofDir, name, 0); err != nil {
			s.log.Warn("heap profile", "scenario", name, "error", err)
		}
	}
}

// enrol creates a repository per hundred hosts, then every host through
// POST /hosts and its agent's credential through POST /enroll, with an age
// X25519 key of its own.
func (s *sim) enrol(ctx context.Context) error {
	api := s.srv.api
	for i := range s.cfg.Repos {
		id, err := api.CreateRepo(ctx, fmt.Sprintf("fleet-%03d", i), fmt.Sprintf("rest:http://127.0.0.1:1/fleet-%03d", i), "fleetsim")
		if err != nil {
			return fmt.Errorf("create repository: %w", err)
		}
		s.repos = append(s.repos, id)
	}
	s.agents = make([]*simAgent, s.cfg.Agents)
	// Zero-touch enrolment: one key carrying the fleet's label, used by
	// every agent (the policy scenario selects them by it).
	var key struct {
		Key string `json:"key"`
	}
	if err := api.Expect(ctx, "POST", "/api/v1/enroll-keys", map[string]any{"name": "fleetsim", "labels": map[string]string{"fleet": "sim"},
		"max_uses": s.cfg.Agents, "expires_in": "24h"}, &key, 201); err != nil {
		return fmt.Errorf("enrolment key: %w", err)
	}
	t0 := time.Now()
	n, err := parallel(ctx, s.cfg.Agents, s.cfg.HTTPParallel, func(i int) error {
		er, err := enrollWithKey(ctx, api.Client, key.Key, fmt.Sprintf("sim-%05d", i))
		if err != nil {
			return err
		}
		s.agents[i] = &simAgent{idx: i, id: er.HostID, password: er.Password, repoID: s.repos[i%len(s.repos)], sim: s}
		return nil
	})
	el := time.Since(t0)
	s.rep.Enrol = enrolFigures{Hosts: s.cfg.Agents - n, Seconds: secs(el), PerSecond: float64(s.cfg.Agents-n) / el.Seconds(), Repos: len(s.repos)}
	if err != nil {
		return fmt.Errorf("enrolment: %w", err)
	}
	// Each repository's access list: the hosts that use it.
	bound := map[string][]string{}
	for _, a := range s.agents {
		if a != nil {
			bound[a.repoID] = append(bound[a.repoID], a.id)
		}
	}
	for repo, hosts := range bound {
		if err := api.BindHosts(ctx, repo, hosts...); err != nil {
			return fmt.Errorf("bind hosts to %s: %w", repo, err)
		}
	}
	return nil
}

// enrollWithKey enrols one simulated agent with an enrolment key, as
// `restic-manager-agent enroll --key` does.
func enrollWithKey(ctx context.Context, api *harness.Client, key, name string) (wire.EnrollResponse, error) {
	var er wire.EnrollResponse
	_, recipient, err := seal.NewIdentity()
	if err != nil {
		return er, err
	}
	err = api.Expect(ctx, "POST", "/api/v1/enroll", wire.EnrollRequest{Key: key, Name: name, PublicKey: recipient, Hostname: name, OS: "linux", Arch: "amd64"}, &er, 200)
	if err == nil && (er.HostID == "" || er.Password == "") {
		err = fmt.Errorf("enrol %s: unexpected answer", name)
	}
	return er, err
}

// idle lets the connected fleet rest (keepalives only) and reads where the
// server's memory goes then: the memory a fleet of this size costs at rest,
// not the connect storm's peak.
func (s *sim) idle(ctx context.Context) error {
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(s.cfg.Idle):
	}
	m, err := s.srv.api.metrics(ctx)
	if err != nil {
		return err
	}
	const mib = 1 << 20
	s.rep.Idle = idleFigures{HeapInuseMiB: m["go_memstats_heap_inuse_bytes"] / mib, StackMiB: m["go_memstats_stack_inuse_bytes"] / mib,
		Goroutines: int(m["go_goroutines"])}
	return nil
}

// policyRollout makes a policy for every host (selected by the label the
// key gave them), then edits its schedule once and times that edit until
// every agent's applied report is stored: one fleet-wide change, not a PUT
// per host.
func (s *sim) policyRollout(ctx context.Context) error {
	api := s.srv.api
	body := func(cron string) map[string]any {
		return map[string]any{"name": "fleet nightly", "selector": map[string]string{"fleet": "sim"}, "repo_id": s.repos[0],
			"schedules": []map[string]any{{"name": "policy nightly", "kind": "backup", "cron": cron, "enabled": true, "paths": []string{"/data"}}}}
	}
	var pol struct {
		ID        string `json:"id"`
		Changed   int    `json:"changed"`
		Schedules []struct {
			ID string `json:"id"`
		} `json:"schedules"`
	}
	base, err := s.storedBase(ctx, mIngestedReported)
	if err != nil {
		return err
	}
	s.desiredSeen.Store(0)
	s.acks.Store(0)
	if err := api.Expect(ctx, "POST", "/api/v1/policies", body("0 4 * * *"), &pol, 201); err != nil {
		return fmt.Errorf("create policy: %w", err)
	}
	n := int64(len(s.agents))
	if _, err := s.waitFor(ctx, "every agent to apply the new policy", 2*time.Millisecond, func() bool { return s.acks.Load() >= n }); err != nil {
		return err
	}
	if _, err := s.stored(ctx, "the console to store every report of the new policy", mIngestedReported, base+float64(s.acks.Load())); err != nil {
		return err
	}
	f := &s.rep.Policy
	f.Hosts = len(s.agents)
	var runs []policyFigures
	for i := range max(1, s.cfg.PolicyEdits) {
		// A cron no earlier edit used, so each agent counts this edit's
		// desired state and report once.
		r, err := s.policyEdit(ctx, pol.ID, pol.Schedules[0].ID, body, fmt.Sprintf("%d 5 * * *", i%60))
		if err != nil {
			*f = r
			return err
		}
		runs = append(runs, r)
	}
	slices.SortFunc(runs, func(a, b policyFigures) int { return cmp.Compare(a.AckAllS, b.AckAllS) })
	*f = runs[len(runs)/2]
	f.Hosts = len(s.agents)
	for _, r := range runs {
		f.AckAllRunsS = append(f.AckAllRunsS, r.AckAllS)
	}
	return nil
}

// policyEdit changes the policy's schedule to cron and times it until
// every agent's report of it is stored.
func (s *sim) policyEdit(ctx context.Context, policyID, scheduleID string, body func(string) map[string]any, cron string) (policyFigures, error) {
	api := s.srv.api
	n := int64(len(s.agents))
	base, err := s.storedBase(ctx, mIngestedReported)
	if err != nil {
		return policyFigures{}, err
	}
	s.desiredSeen.Store(0)
	s.acks.Store(0)
	s.policyDesired.Store(0)
	s.policyAcked.Store(0)
	for _, a := range s.agents {
		a.policySeen.Store(false)
		a.policyAcked.Store(false)
	}
	var f policyFigures
	before := harness.ReadStats(s.srv.Proc.Pid())
	s.policyCron.Store(&cron)
	edit := body(cron)
	edit["schedules"].([]map[string]any)[0]["id"] = scheduleID
	var pol struct {
		Changed int `json:"changed"`
	}
	t0 := time.Now()
	if err := api.Expect(ctx, "PUT", "/api/v1/policies/"+policyID, edit, &pol, 200); err != nil {
		return f, fmt.Errorf("edit policy: %w", err)
	}
	f.EditS, f.Changed = secs(time.Since(t0)), pol.Changed
	at, err := s.waitFor(ctx, "every agent to receive the edited policy", 2*time.Millisecond, func() bool { return s.policyDesired.Load() >= n })
	f.Desired = int(s.policyDesired.Load())
	if err != nil {
		return f, err
	}
	f.DesiredAllS = secs(at.Sub(t0))
	at, err = s.waitFor(ctx, "every applied report of the edited policy to be acknowledged", 2*time.Millisecond, func() bool { return s.policyAcked.Load() >= n })
	f.Acked = int(s.policyAcked.Load())
	if err != nil {
		return f, err
	}
	f.PubackAllS = secs(at.Sub(t0))
	if at, err = s.stored(ctx, "the console to store every report of the edited policy", mIngestedReported, base+float64(s.acks.Load())); err != nil {
		return f, err
	}
	f.AckAllS = secs(at.Sub(t0))
	after := harness.ReadStats(s.srv.Proc.Pid())
	if n > 0 {
		f.CPUMsPerHost = (after.CPUSecs - before.CPUSecs) * 1000 / float64(n)
	}
	return f, nil
}

// connectStorm connects every agent at once (ConnParallel attempts in
// flight), then each subscribes and announces itself online, as the real
// agent does. The status PUBACK comes after the console stored the host as
// online.
func (s *sim) connectStorm(ctx context.Context) error {
	var connacks, onlines, retries atomic.Int64
	var lastConnack, lastOnline atomicTime
	var onlineErrs errCounter
	var statusBase float64
	if s.external() {
		// Not read with the embedded broker: the first scrape would start
		// the fleet gauges' 15 s cache that the check below waits out.
		var err error
		if statusBase, err = s.counter(ctx, mIngestedStatus); err != nil {
			return err
		}
	}
	started := time.Now().UTC()
	t0 := time.Now()
	failed, err := parallel(ctx, len(s.agents), s.cfg.ConnParallel, func(i int) error {
		a := s.agents[i]
		var err error
		for attempt := range 4 {
			if attempt > 0 {
				retries.Add(1)
				time.Sleep(time.Duration(attempt) * time.Second)
			}
			if err = a.connect(ctx, s.srv.MQTTAddr); err == nil {
				break
			}
		}
		if err != nil {
			return err
		}
		connacks.Add(1)
		lastConnack.max(time.Now())
		return s.pool.submit(ctx, func() {
			if err := a.subscribe(ctx); err != nil {
				onlineErrs.add(err)
				return
			}
			if err := a.publishStatus(ctx, started); err != nil {
				onlineErrs.add(err)
				return
			}
			onlines.Add(1)
			lastOnline.max(time.Now())
		})
	})
	f := &s.rep.Connect
	f.Agents = len(s.agents)
	f.Failed = failed
	f.Retries = int(retries.Load())
	f.Connected = int(connacks.Load())
	if err != nil {
		f.ConnackAllS = secs(time.Since(t0))
		return fmt.Errorf("connect: %w", err)
	}
	f.ConnackAllS = secs(lastConnack.get().Sub(t0))
	_, werr := s.waitFor(ctx, "every agent online (status acknowledged)", 5*time.Millisecond, func() bool {
		n, _ := onlineErrs.peek()
		return onlines.Load()+int64(n) >= int64(len(s.agents))
	})
	f.OnlineAllS = secs(lastOnline.get().Sub(t0))
	f.Online = int(onlines.Load())
	if n, first := onlineErrs.take(); n > 0 {
		return fmt.Errorf("%d agents could not subscribe or publish status, first: %v", n, first)
	}
	if werr != nil {
		return werr
	}
	// With an external broker the PUBACKs were the broker's: the console's
	// status counter says when it stored them (its online gauge is read
	// from the store at most every --metrics-refresh, 15 s).
	if s.external() {
		at, err := s.stored(ctx, "the console to store every agent's status", mIngestedStatus, statusBase+float64(f.Online))
		if err != nil {
			return err
		}
		f.StoredAllS = secs(at.Sub(t0))
		// The console's view through the API: the /metrics gauge below
		// would wait out its cache, primed by the counter just read.
		online, err := s.onlineHosts(ctx)
		f.ConsoleOnline, f.ConsoleAllS = online, secs(time.Since(t0))
		if err == nil && online != len(s.agents) {
			err = fmt.Errorf("the API shows %d of %d hosts online", online, len(s.agents))
		}
		return err
	}
	// The console's own view: its metrics count hosts stored as online.
	var seen float64
	at, err := s.waitFor(ctx, "the console to count every agent connected", 100*time.Millisecond, func() bool {
		m, err := s.srv.api.metrics(ctx)
		if err != nil {
			return false
		}
		seen = m[mAgentsConnected]
		return int(seen) >= len(s.agents)
	})
	f.ConsoleOnline = int(seen)
	if err != nil {
		return err
	}
	f.ConsoleAllS = secs(at.Sub(t0))
	return nil
}

// onlineHosts counts the simulated hosts the API lists as online.
func (s *sim) onlineHosts(ctx context.Context) (int, error) {
	ours := map[string]bool{}
	for _, a := range s.agents {
		ours[a.id] = true
	}
	online, after := 0, ""
	for {
		var page []harness.Host
		if err := s.srv.api.Do(ctx, "GET", "/api/v1/hosts?limit=1000&after="+after, nil, &page); err != nil {
			return online, err
		}
		for _, h := range page {
			if ours[h.ID] && h.Online {
				online++
			}
		}
		if len(page) < 1000 {
			return online, nil
		}
		after = page[len(page)-1].ID
	}
}

// rollout PUTs one schedule to every host and waits for every agent to
// receive the desired state and for every report to be stored.
func (s *sim) rollout(ctx context.Context) error {
	s.desiredSeen.Store(0)
	s.acks.Store(0)
	n := int64(len(s.agents))
	jitter := 0
	base, err := s.storedBase(ctx, mIngestedReported)
	if err != nil {
		return err
	}
	t0 := time.Now()
	failed, err := parallel(ctx, len(s.agents), s.cfg.HTTPParallel, func(i int) error {
		a := s.agents[i]
		var out struct {
			Version   int64 `json:"version"`
			Schedules []struct {
				ID string `json:"id"`
			} `json:"schedules"`
		}
		if err := s.srv.api.Do(ctx, "PUT", "/api/v1/hosts/"+a.id+"/schedules", []map[string]any{{
			"name": "nightly", "kind": "backup", "cron": "0 3 * * *", "enabled": true, "jitter_s": jitter,
			"repo_id": a.repoID, "paths": []string{"/data"},
		}}, &out); err != nil {
			return err
		}
		if len(out.Schedules) != 1 || out.Version < 1 {
			return fmt.Errorf("PUT schedules of %s: unexpected answer", a.id)
		}
		a.scheduleID, a.scheduleVer = out.Schedules[0].ID, out.Version
		return nil
	})
	f := &s.rep.Rollout
	f.Hosts = len(s.agents)
	f.PutsS = secs(time.Since(t0))
	if err != nil {
		f.PutFailed = failed
		return fmt.Errorf("PUT schedules: %w", err)
	}
	at, err := s.waitFor(ctx, "every agent to receive its desired schedules", 2*time.Millisecond, func() bool { return s.desiredSeen.Load() >= n })
	f.Desired = int(s.desiredSeen.Load())
	if err != nil {
		return err
	}
	f.DesiredAllS = secs(at.Sub(t0))
	at, err = s.waitFor(ctx, "every applied report to be acknowledged", 2*time.Millisecond, func() bool { return s.acks.Load() >= n })
	f.Acked = int(s.acks.Load())
	if err != nil {
		return err
	}
	f.PubackAllS = secs(at.Sub(t0))
	if at, err = s.stored(ctx, "the console to store every applied report", mIngestedReported, base+float64(s.acks.Load())); err != nil {
		return err
	}
	f.AckAllS = secs(at.Sub(t0))
	for _, a := range s.agents {
		if v := a.desiredVersion.Load(); v != a.scheduleVer {
			return fmt.Errorf("agent %s received desired version %d, the API said %d", a.id, v, a.scheduleVer)
		}
	}
	// The console's view: every host's applied version is the desired one.
	byID := map[string]*simAgent{}
	for _, a := range s.agents {
		byID[a.id] = a
	}
	checked, after := 0, ""
	for {
		var page []struct {
			ID      string `json:"id"`
			Desired int64  `json:"schedule_version_desired"`
			Applied int64  `json:"schedule_version_applied"`
		}
		if err := s.srv.api.Do(ctx, "GET", "/api/v1/hosts?limit=1000&after="+after, nil, &page); err != nil {
			return err
		}
		for _, h := range page {
			a := byID[h.ID]
			if a == nil {
				continue
			}
			checked++
			if h.Applied != a.scheduleVer || h.Desired != a.scheduleVer {
				return fmt.Errorf("host %s: console has desired %d applied %d, want %d", h.ID, h.Desired, h.Applied, a.scheduleVer)
			}
		}
		if len(page) < 1000 {
			break
		}
		after = page[len(page)-1].ID
	}
	f.APIVerified = checked
	if checked != len(s.agents) {
		return fmt.Errorf("the API listed %d of %d hosts", checked, len(s.agents))
	}
	return nil
}

// atomicTime keeps the latest of several times.
type atomicTime struct{ ns atomic.Int64 }

func (t *atomicTime) max(v time.Time) {
	n := v.UnixNano()
	for {
		old := t.ns.Load()
		if n <= old || t.ns.CompareAndSwap(old, n) {
			return
		}
	}
}

func (t *atomicTime) get() time.Time { return time.Unix(0, t.ns.Load()) }

func (e *errCounter) peek() (int, []string) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.n, append([]string(nil), e.first...)
}

func secs(d time.Duration) float64 { return float64(d.Milliseconds()) / 1000 }

// external says whether a PUBACK is the broker's alone: with the embedded
// broker it comes after the console stored the message, with an external
// one the console stores it later, from its shared subscription.
func (s *sim) external() bool { return s.mosq != nil }

// stored waits until the console's counter metric has reached want (with
// the embedded broker at once: the PUBACKs already said so) and returns
// when it did. /metrics is polled every 100 ms per 2,000 agents, which
// bounds the resolution of the times taken from it: each scrape carries a
// series per host and cost the console about 30 ms of CPU at 1,000 agents
// (a third of its CPU in the connect storm when polled every 100 ms).
func (s *sim) stored(ctx context.Context, what, metric string, want float64) (time.Time, error) {
	if !s.external() {
		return time.Now(), nil
	}
	step := time.Duration(max(1, len(s.agents)/2000)) * 100 * time.Millisecond
	var got float64
	at, err := s.waitFor(ctx, what, step, func() bool {
		m, err := s.srv.api.metrics(ctx)
		if err != nil {
			return false
		}
		got = m[metric]
		return got >= want
	})
	if err != nil {
		return at, fmt.Errorf("%w (%s at %.0f of %.0f)", err, metric, got, want)
	}
	return at, nil
}

// storedBase is the counter stored waits to pass: read only with an
// external broker, since with the embedded one a PUBACK already means
// stored, and a /metrics scrape at the start of a timed scenario costs the
// server up to 0.4 CPU-s at 10,000 hosts (its fleet gauges).
func (s *sim) storedBase(ctx context.Context, metric string) (float64, error) {
	if !s.external() {
		return 0, nil
	}
	return s.counter(ctx, metric)
}

// counter reads one of the console's counters.
func (s *sim) counter(ctx context.Context, metric string) (float64, error) {
	m, err := s.srv.api.metrics(ctx)
	if err != nil {
		return 0, err
	}
	return m[metric], nil
}
