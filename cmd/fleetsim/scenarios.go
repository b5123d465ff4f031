package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// latencies collects durations from many goroutines.
type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

// dist summarises latencies in milliseconds.
type dist struct {
	N     int     `json:"n"`
	P50Ms float64 `json:"p50_ms"`
	P99Ms float64 `json:"p99_ms"`
	MaxMs float64 `json:"max_ms"`
}

func (l *latencies) dist() dist {
	l.mu.Lock()
	d := append([]time.Duration(nil), l.d...)
	l.mu.Unlock()
	if len(d) == 0 {
		return dist{}
	}
	sort.Slice(d, func(i, j int) bool { return d[i] < d[j] })
	ms := func(x time.Duration) float64 { return float64(x.Microseconds()) / 1000 }
	at := func(p float64) time.Duration { return d[min(len(d)-1, int(float64(len(d))*p))] }
	return dist{N: len(d), P50Ms: ms(at(0.50)), P99Ms: ms(at(0.99)), MaxMs: ms(d[len(d)-1])}
}

// fireStorm has every agent fire the same schedule for the same minute at
// once, then republishes a few fires (the same fire again, and a new fire
// for the same minute) and checks that each fire made exactly one job.
func (s *sim) fireStorm(ctx context.Context) error {
	n := len(s.agents)
	// The schedule's (0 3 * * *) latest time: the console accepts fires
	// for its cron's own times only, not later than now.
	minute := time.Now().UTC().Truncate(24 * time.Hour).Add(3 * time.Hour)
	if minute.After(time.Now()) {
		minute = minute.Add(-24 * time.Hour)
	}
	firedAt := make([]atomic.Int64, n)
	jobOf := make([]string, n)
	var got, extra atomic.Int64
	var lat latencies
	var allAt atomicTime
	var mu sync.Mutex
	s.setHandler(func(ev cmdEvent) {
		i := ev.a.idx
		mu.Lock()
		dup := jobOf[i] != ""
		if !dup {
			jobOf[i] = ev.cmd.JobID
		}
		mu.Unlock()
		if dup {
			extra.Add(1)
			return
		}
		if f := firedAt[i].Load(); f != 0 {
			lat.add(ev.at.Sub(time.Unix(0, f)))
		}
		got.Add(1)
		allAt.max(ev.at)
	})
	defer s.setHandler(nil)
	m0, err := s.srv.api.metrics(ctx)
	if err != nil {
		return err
	}
	fire := func(a *simAgent, id string) wire.Fire {
		return wire.Fire{FireID: id, ScheduleID: a.scheduleID, ScheduleVersion: a.scheduleVer, ScheduledAt: minute, FiredAt: time.Now().UTC()}
	}
	payloads := make([][]byte, n)
	for i, a := range s.agents {
		f := fire(a, fmt.Sprintf("f-%d-%d", i, minute.Unix()))
		if payloads[i], err = wire.Encode(&f); err != nil {
			return err
		}
	}
	var pubErrs errCounter
	t0 := time.Now()
	for i, a := range s.agents {
		if err := s.pool.submit(ctx, func() {
			firedAt[i].Store(time.Now().UnixNano())
			pubErrs.add(a.publishRaw(ctx, wire.FiresTopic(a.id), payloads[i], false))
		}); err != nil {
			return err
		}
	}
	f := &s.rep.Fire
	f.Fires = n
	_, werr := s.waitFor(ctx, "a command for every fire", 2*time.Millisecond, func() bool {
		pe, _ := pubErrs.peek()
		return got.Load()+int64(pe) >= int64(n)
	})
	f.Commands = int(got.Load())
	f.Latency = lat.dist()
	if pe, first := pubErrs.take(); pe > 0 {
		return fmt.Errorf("%d fires not acknowledged, first: %v", pe, first)
	}
	if werr != nil {
		return werr
	}
	f.AllCommandsS = secs(allAt.get().Sub(t0))

	// Duplicates: half the same fire again (a QoS-1 redelivery), half a new
	// fire for the same minute (an agent that lost its fire log).
	dups := s.cfg.Dups
	for k := range dups {
		i := k * n / dups
		a := s.agents[i]
		b := payloads[i]
		if k%2 == 1 {
			ff := fire(a, fmt.Sprintf("f-%d-%d-again", i, minute.Unix()))
			if b, err = wire.Encode(&ff); err != nil {
				return err
			}
		}
		if err := a.publishRaw(ctx, wire.FiresTopic(a.id), b, false); err != nil {
			return fmt.Errorf("duplicate fire: %w", err)
		}
	}
	f.Duplicates = dups
	// Each fire's PUBACK comes after the console handled it (with an
	// external broker: once the console counted them), so the counters are
	// final now; a moment more lets any stray command arrive.
	if _, err := s.stored(ctx, "the console to count the duplicate fires", mFiresDuplicate, m0[mFiresDuplicate]+float64(dups)); err != nil {
		return err
	}
	time.Sleep(500 * time.Millisecond)
	m1, err := s.srv.api.metrics(ctx)
	if err != nil {
		return err
	}
	f.AcceptedFires = int(m1[mFiresAccepted] - m0[mFiresAccepted])
	f.DuplicatesSeen = int(m1[mFiresDuplicate] - m0[mFiresDuplicate])
	f.ExtraCommands = int(extra.Load())

	// The API's view: exactly one job per host for this schedule and minute.
	perHost := map[string]int{}
	jobs, err := s.srv.api.Jobs(ctx, 500)
	if err != nil {
		return err
	}
	total := len(jobs)
	for _, j := range jobs {
		if j.ScheduledAt.Equal(minute) && j.ScheduleID != "" {
			perHost[j.HostID]++
		}
	}
	one := 0
	for _, a := range s.agents {
		if perHost[a.id] == 1 {
			one++
		}
		f.JobsForFires += perHost[a.id]
	}
	f.HostsWithOneJob = one
	f.JobsListed = total

	// Finish the fired jobs as an agent would: started, then succeeded.
	t1 := time.Now()
	failed, err := parallel(ctx, n, s.cfg.Workers, func(i int) error {
		return s.finishJob(ctx, s.agents[i], jobOf[i], 1, time.Now())
	})
	if err != nil {
		f.CompleteS = secs(time.Since(t1))
		return fmt.Errorf("%d fired jobs not completed: %w", failed, err)
	}
	at, err := s.stored(ctx, "the console to store the fired jobs' results", mIngestedResult, m1[mIngestedResult]+float64(n))
	f.CompleteS = secs(at.Sub(t1))
	if err != nil {
		return err
	}
	switch {
	case f.ExtraCommands > 0:
		return fmt.Errorf("%d commands beyond one per fire", f.ExtraCommands)
	case one != n || f.JobsForFires != n:
		return fmt.Errorf("jobs per fire: %d hosts have exactly one, %d jobs for %d fires", one, f.JobsForFires, n)
	case f.DuplicatesSeen != dups:
		return fmt.Errorf("the console counted %d duplicate fires, %d were sent", f.DuplicatesSeen, dups)
	case f.AcceptedFires != n:
		return fmt.Errorf("the console accepted %d fires, want %d", f.AcceptedFires, n)
	}
	return nil
}

// streamJob is one job of the progress scenario.
type streamJob struct {
	a       *simAgent
	id      string
	created time.Time
	recv    atomic.Int64 // command received, unix ns
	busy    atomic.Bool  // a publish of this job is in flight
	acked   atomic.Int64 // last seq acknowledged
	sent    int64        // last seq handed out (driver only)
	next    time.Time    // next progress due (driver only)
	started time.Time
	pubAt   []atomic.Int64 // by seq, for jobs watched over SSE
}

// startJobs creates one backup job on each agent through the API and
// waits until every agent has its command.
func (s *sim) startJobs(ctx context.Context, agents []*simAgent, sample int) ([]*streamJob, dist, error) {
	jobs := make([]*streamJob, len(agents))
	byID := sync.Map{}
	var got atomic.Int64
	var lat latencies
	pending := sync.Map{} // job ID → command arrived before the API answered
	s.setHandler(func(ev cmdEvent) {
		if v, ok := byID.Load(ev.cmd.JobID); ok {
			j := v.(*streamJob)
			if j.recv.CompareAndSwap(0, ev.at.UnixNano()) {
				got.Add(1)
			}
			return
		}
		pending.Store(ev.cmd.JobID, ev.at)
	})
	defer s.setHandler(nil)
	_, err := parallel(ctx, len(agents), s.cfg.HTTPParallel, func(i int) error {
		a := agents[i]
		t := time.Now()
		id, err := s.srv.api.CreateJob(ctx, a.id, map[string]any{
			"kind": "backup", "repo_id": a.repoID, "args": map[string]any{"paths": []string{"/data"}},
		})
		if err != nil {
			return err
		}
		j := &streamJob{a: a, id: id, created: t}
		jobs[i] = j
		byID.Store(j.id, j)
		if v, ok := pending.LoadAndDelete(j.id); ok && j.recv.CompareAndSwap(0, v.(time.Time).UnixNano()) {
			got.Add(1)
		}
		return nil
	})
	if err != nil {
		return nil, dist{}, fmt.Errorf("create jobs: %w", err)
	}
	// A command may have landed in pending between the handler's lookup and
	// the Store above.
	pending.Range(func(k, v any) bool {
		if jv, ok := byID.Load(k); ok && jv.(*streamJob).recv.CompareAndSwap(0, v.(time.Time).UnixNano()) {
			got.Add(1)
		}
		return true
	})
	if _, err := s.waitFor(ctx, "every job's command", 2*time.Millisecond, func() bool { return got.Load() >= int64(len(jobs)) }); err != nil {
		return nil, dist{}, err
	}
	seqs := int(s.cfg.Duration.Seconds()*s.cfg.ProgressRate) + 16
	for k := range sample {
		j := jobs[k*len(jobs)/sample]
		j.pubAt = make([]atomic.Int64, seqs)
	}
	for _, j := range jobs {
		lat.add(time.Unix(0, j.recv.Load()).Sub(j.created))
	}
	return jobs, lat.dist(), nil
}

// sseWatch follows one job's event stream and records, per progress seq,
// when it arrived.
type sseWatch struct {
	job    *streamJob
	ready  chan struct{}
	done   chan struct{}
	events atomic.Int64
	result atomic.Bool
	err    error
}

func (s *sim) watch(ctx context.Context, j *streamJob, lat *latencies) *sseWatch {
	w := &sseWatch{job: j, ready: make(chan struct{}), done: make(chan struct{})}
	go func() {
		defer close(w.done)
		readyOnce := sync.OnceFunc(func() { close(w.ready) })
		defer readyOnce()
		req, err := http.NewRequestWithContext(ctx, "GET", s.srv.api.Base+"/api/v1/jobs/"+j.id+"/events", nil)
		if err != nil {
			w.err = err
			return
		}
		req.Header.Set("Authorization", "Bearer "+s.srv.api.Token)
		resp, err := s.srv.api.sse.Do(req)
		if err != nil {
			w.err = fmt.Errorf("events of %s: %w", j.id, err)
			return
		}
		defer resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			w.err = fmt.Errorf("events of %s: status %d", j.id, resp.StatusCode)
			return
		}
		rd := bufio.NewReaderSize(resp.Body, 64<<10)
		for {
			line, err := rd.ReadSlice('\n')
			if err != nil {
				if ctx.Err() == nil && !w.result.Load() {
					w.err = fmt.Errorf("events of %s: %w", j.id, err)
				}
				return
			}
			at := time.Now()
			data, ok := bytes.CutPrefix(line, []byte("data: "))
			if !ok {
				continue
			}
			var ev struct {
				Status   string `json:"status"`
				Progress *struct {
					Seq int64 `json:"seq"`
				} `json:"progress"`
			}
			if err := json.Unmarshal(data, &ev); err != nil {
				w.err = fmt.Errorf("events of %s: %w", j.id, err)
				return
			}
			readyOnce()
			w.events.Add(1)
			if ev.Progress != nil && ev.Progress.Seq > 0 && ev.Progress.Seq < int64(len(j.pubAt)) {
				if p := j.pubAt[ev.Progress.Seq].Load(); p != 0 && ev.Status == "running" {
					lat.add(at.Sub(time.Unix(0, p)))
				}
			}
			switch ev.Status {
			case "succeeded", "partial", "failed", "cancelled", "expired":
				w.result.Store(true)
				return
			}
		}
	}()
	return w
}

// stream runs M jobs that each report progress ProgressRate times a second
// for Duration, then a result, and checks that nothing was lost.
func (s *sim) stream(ctx context.Context) error {
	f := &s.rep.Stream
	f.Jobs = s.cfg.Jobs
	f.DurationS = s.cfg.Duration.Seconds()
	f.RatePerJob = s.cfg.ProgressRate
	jobs, cmdLat, err := s.startJobs(ctx, s.agents[:s.cfg.Jobs], s.cfg.SSESample)
	f.CreateToCommand = cmdLat
	if err != nil {
		return err
	}
	sseCtx, stopSSE := context.WithCancel(ctx)
	defer stopSSE()
	var sseLat latencies
	var watches []*sseWatch
	for _, j := range jobs {
		if j.pubAt != nil {
			watches = append(watches, s.watch(sseCtx, j, &sseLat))
		}
	}
	for _, w := range watches {
		select {
		case <-w.ready:
		case <-ctx.Done():
			return ctx.Err()
		}
		if w.err != nil {
			return w.err
		}
	}
	f.SSEStreams = len(watches)

	m0, err := s.srv.api.metrics(ctx)
	if err != nil {
		return err
	}
	interval := time.Duration(float64(time.Second) / s.cfg.ProgressRate)
	maxSeq := int64(s.cfg.Duration.Seconds()*s.cfg.ProgressRate) + 1
	var ackLat latencies
	var pubErrs errCounter
	var sent atomic.Int64
	var lastAck atomicTime
	t0 := time.Now()
	for i, j := range jobs {
		j.next = t0.Add(time.Duration(i) * interval / time.Duration(len(jobs)))
		j.started = t0
	}
	end := t0.Add(s.cfg.Duration)
	tick := time.NewTicker(5 * time.Millisecond)
	for now := time.Now(); now.Before(end); now = <-tick.C {
		for _, j := range jobs {
			if j.sent >= maxSeq || now.Before(j.next) || !j.busy.CompareAndSwap(false, true) {
				continue
			}
			j.sent++
			seq := j.sent
			j.next = j.next.Add(interval)
			if j.next.Before(now) {
				j.next = now // fell behind: an agent reports the current state, not a backlog
			}
			p := progressMsg(j.id, seq, j.started, min(99, float64(seq)*100/float64(maxSeq)))
			if err := s.pool.submit(ctx, func() {
				st := time.Now()
				if j.pubAt != nil && seq < int64(len(j.pubAt)) {
					j.pubAt[seq].Store(st.UnixNano())
				}
				if err := j.a.publish(ctx, wire.ProgressTopic(j.a.id, j.id), &p, false); err != nil {
					pubErrs.add(err)
				} else {
					j.acked.Store(seq)
					sent.Add(1)
					ackLat.add(time.Since(st))
					lastAck.max(time.Now())
				}
				j.busy.Store(false)
			}); err != nil {
				tick.Stop()
				return err
			}
		}
	}
	tick.Stop()
	if _, err := s.waitFor(ctx, "progress publishes in flight", 5*time.Millisecond, func() bool {
		for _, j := range jobs {
			if j.busy.Load() {
				return false
			}
		}
		return true
	}); err != nil {
		return err
	}
	el := lastAck.get().Sub(t0)
	if s.external() {
		at, err := s.stored(ctx, "the console to store the progress", mIngestedProgress, m0[mIngestedProgress]+float64(sent.Load()))
		if err != nil {
			return err
		}
		el = at.Sub(t0)
	}
	m1, err := s.srv.api.metrics(ctx)
	if err != nil {
		return err
	}
	f.ProgressSent = int(sent.Load())
	f.ProgressIngested = int(m1[mIngestedProgress] - m0[mIngestedProgress])
	f.IngestPerSecond = float64(f.ProgressIngested) / el.Seconds()
	f.OfferedPerSecond = float64(len(jobs)) * s.cfg.ProgressRate
	f.PublishAck = ackLat.dist()
	if n, first := pubErrs.take(); n > 0 {
		return fmt.Errorf("%d progress publishes failed, first: %v", n, first)
	}

	// Results.
	t1 := time.Now()
	if failed, err := parallel(ctx, len(jobs), s.cfg.Workers, func(i int) error {
		j := jobs[i]
		r := resultMsg(j.id, j.started)
		return j.a.publish(ctx, wire.ResultTopic(j.a.id, j.id), &r, false)
	}); err != nil {
		return fmt.Errorf("%d results not acknowledged: %w", failed, err)
	}
	at, err := s.stored(ctx, "the console to store the results", mIngestedResult, m1[mIngestedResult]+float64(len(jobs)))
	f.ResultsS = secs(at.Sub(t1))
	if err != nil {
		return err
	}
	m2, err := s.srv.api.metrics(ctx)
	if err != nil {
		return err
	}
	f.ResultsIngested = int(m2[mIngestedResult] - m1[mIngestedResult])

	// SSE streams end with the result.
	for _, w := range watches {
		select {
		case <-w.done:
		case <-time.After(30 * time.Second):
		}
	}
	stopSSE()
	for _, w := range watches {
		<-w.done
		f.SSEEvents += int(w.events.Load())
		if w.result.Load() {
			f.SSEResults++
		}
		if w.err != nil {
			s.rep.addError("stream: " + w.err.Error())
		}
	}
	f.SSE = sseLat.dist()

	lost, missing, err := s.verifyJobs(ctx, jobs)
	f.ProgressLost, f.ResultsMissing = lost, missing
	if err != nil {
		return err
	}
	if lost > 0 || missing > 0 || f.SSEResults != len(watches) {
		return fmt.Errorf("%d jobs lost progress, %d results missing, %d of %d event streams saw the result", lost, missing, f.SSEResults, len(watches))
	}
	return nil
}

// verifyJobs checks through the API that each job's last progress is the
// last one acknowledged and that its result is recorded.
func (s *sim) verifyJobs(ctx context.Context, jobs []*streamJob) (lost, missing int, err error) {
	var nl, nm atomic.Int64
	_, err = parallel(ctx, len(jobs), s.cfg.HTTPParallel, func(i int) error {
		j := jobs[i]
		got, err := s.srv.api.Job(ctx, j.id)
		if err != nil {
			return err
		}
		if got.Progress == nil || got.Progress.Seq != j.acked.Load() {
			if nl.Add(1) <= 3 {
				stored := int64(-1)
				if got.Progress != nil {
					stored = got.Progress.Seq
				}
				s.log.Warn("job's last progress not the last acknowledged", "job", j.id, "status", got.Status, "stored_seq", stored, "acked_seq", j.acked.Load())
			}
		}
		if got.Status != wire.StatusSucceeded || got.SnapshotID != snapshotIDOf(j.id) {
			nm.Add(1)
		}
		return nil
	})
	return int(nl.Load()), int(nm.Load()), err
}

// flood publishes progress for one job per publisher as fast as each
// connection's acknowledgements allow, for d. It returns the messages
// acknowledged and the time taken.
func flood(ctx context.Context, jobs []*streamJob, d time.Duration) (int64, time.Duration, error) {
	var acked atomic.Int64
	var errs errCounter
	var wg sync.WaitGroup
	t0 := time.Now()
	end := t0.Add(d)
	for _, j := range jobs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			seq := j.acked.Load()
			for time.Now().Before(end) && ctx.Err() == nil {
				seq++
				p := progressMsg(j.id, seq, j.started, float64(seq%100))
				if err := j.a.publish(ctx, wire.ProgressTopic(j.a.id, j.id), &p, false); err != nil {
					errs.add(err)
					return
				}
				j.acked.Store(seq)
				acked.Add(1)
			}
		}()
	}
	wg.Wait()
	el := time.Since(t0)
	if n, first := errs.take(); n > 0 {
		return acked.Load(), el, fmt.Errorf("%d publishers failed, first: %v", n, first)
	}
	return acked.Load(), el, nil
}

// ceiling floods the console with progress from K publishers, then the same
// load against a bare broker process with nothing behind it.
func (s *sim) ceiling(ctx context.Context) error {
	f := &s.rep.Ceiling
	k := s.cfg.Publishers
	f.Publishers = k
	f.FloodS = s.cfg.Flood.Seconds()
	agents := s.agents[len(s.agents)-k:]
	jobs, _, err := s.startJobs(ctx, agents, 0)
	if err != nil {
		return err
	}
	now := time.Now()
	for _, j := range jobs {
		j.started = now
	}
	m0, err := s.srv.api.metrics(ctx)
	if err != nil {
		return err
	}
	t0 := time.Now()
	n, el, err := flood(ctx, jobs, s.cfg.Flood)
	f.ConsoleMsgs = int(n)
	f.ConsolePerSecond = float64(n) / el.Seconds()
	if err != nil {
		return fmt.Errorf("console flood: %w", err)
	}
	// With an external broker the PUBACK rate is the broker's; the
	// console's is how long it took to store them all.
	at, err := s.stored(ctx, "the console to store the flood", mIngestedProgress, m0[mIngestedProgress]+float64(n))
	if err != nil {
		return err
	}
	f.StoredS = secs(at.Sub(t0))
	f.StoredPerSecond = float64(n) / at.Sub(t0).Seconds()
	m1, err := s.srv.api.metrics(ctx)
	if err != nil {
		return err
	}
	f.ConsoleIngested = int(m1[mIngestedProgress] - m0[mIngestedProgress])
	if _, err := parallel(ctx, len(jobs), s.cfg.Workers, func(i int) error {
		j := jobs[i]
		r := resultMsg(j.id, j.started)
		return j.a.publish(ctx, wire.ResultTopic(j.a.id, j.id), &r, false)
	}); err != nil {
		return fmt.Errorf("flood results: %w", err)
	}
	if _, err := s.stored(ctx, "the console to store the flood's results", mIngestedResult, m1[mIngestedResult]+float64(len(jobs))); err != nil {
		return err
	}
	lost, missing, err := s.verifyJobs(ctx, jobs)
	f.ConsoleLost, f.ResultsMissing = lost, missing
	if err != nil {
		return err
	}
	// The console's own jobs (health refreshes the simulated agents finish
	// at once) may add a few progress reports; fewer than acknowledged
	// would be a loss.
	if lost > 0 || missing > 0 || f.ConsoleIngested < f.ConsoleMsgs {
		return fmt.Errorf("flood: %d jobs lost progress, %d results missing, %d acknowledged but %d counted as ingested", lost, missing, f.ConsoleMsgs, f.ConsoleIngested)
	}
	if s.cfg.SkipBare || s.external() {
		// The bare half is the embedded broker's reference; Mosquitto's
		// own rate is what the console half's PUBACKs measure.
		return nil
	}
	s.settle(ctx)
	bare, err := s.bareFlood(ctx, agents)
	f.Bare = bare
	if err != nil {
		return fmt.Errorf("bare broker: %w", err)
	}
	if bare.PerSecond > 0 {
		f.ConsolePctOfBare = 100 * f.ConsolePerSecond / bare.PerSecond
	}
	return nil
}
