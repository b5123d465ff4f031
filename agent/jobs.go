package agent

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// jobTable is the jobs this process started and that have not ended yet
// (queued for their repository or running), and the jobs it must never run.
//
// mu guards running and refused, and orders job starts against shutdown:
// admit adds to wg under mu only while ctx is live, and stop cancels ctx
// under mu before it waits, so no job is added to a WaitGroup being waited
// on. admit also checks the journal under mu, so that two starts of one job
// (recovery and the gathering window, or a redelivery) cannot both find it
// "received". Nothing under mu waits for the network or for restic.
type jobTable struct {
	ctx    context.Context // parent of every job; cancelled on shutdown (set by run)
	cancel context.CancelFunc
	wg     sync.WaitGroup // one count per started job

	mu      sync.Mutex
	running map[string]context.CancelFunc
	// refused: jobs never to run in this process, whose command could not
	// be journaled (reported failed) or whose end could not (forgotten).
	refused map[string]bool
}

// admit registers job id as started, if it is not already and startable()
// holds, and returns the job's context.
func (t *jobTable) admit(id string, startable func() bool) (context.Context, context.CancelFunc, bool) {
	ctx, cancel := context.WithCancel(t.ctx)
	t.mu.Lock()
	defer t.mu.Unlock()
	if _, dup := t.running[id]; dup || t.ctx.Err() != nil || !startable() {
		cancel()
		return nil, nil, false
	}
	t.running[id] = cancel
	t.wg.Add(1)
	return ctx, cancel, true
}

// ended removes a job that admit started; its goroutine calls t.wg.Done
// after it.
func (t *jobTable) ended(id string, cancel context.CancelFunc) {
	t.mu.Lock()
	delete(t.running, id)
	t.mu.Unlock()
	cancel()
}

// cancelFunc is the cancel of a started job.
func (t *jobTable) cancelFunc(id string) (context.CancelFunc, bool) {
	t.mu.Lock()
	defer t.mu.Unlock()
	cancel, ok := t.running[id]
	return cancel, ok
}

// ids lists the started jobs, sorted.
func (t *jobTable) ids() []string {
	t.mu.Lock()
	ids := make([]string, 0, len(t.running))
	for id := range t.running {
		ids = append(ids, id)
	}
	t.mu.Unlock()
	sort.Strings(ids)
	return ids
}

func (t *jobTable) refuse(id string) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.refused[id] = true
}

func (t *jobTable) isRefused(id string) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.refused[id]
}

// stop cancels every job and waits for them to end.
func (t *jobTable) stop() {
	t.mu.Lock() // see admit: no job is added once this returns
	t.cancel()
	t.mu.Unlock()
	t.wg.Wait()
}

// stopping tells whether the agent is shutting down.
func (t *jobTable) stopping() bool { return t.ctx.Err() != nil }

// start runs a job in its own goroutine, owned by the job table.
func (a *Agent) start(cmd wire.Command) {
	// Only a job still "received" starts: recovery after a restart and the
	// gathering window may both hold one that already ran.
	ctx, cancel, ok := a.jobs.admit(cmd.JobID, func() bool {
		e, ok, err := a.jr.get(cmd.JobID)
		return err == nil && ok && e.State == jobReceived
	})
	if !ok {
		return
	}
	// The job's place in its repository's queue is taken now, in arrival
	// order: the goroutines below start in any order, and jobs for one
	// repository must run in the order they came.
	var rv *runner.Reservation
	if cmd.Kind != wire.JobHealth && cmd.Kind != wire.JobIndex {
		if spec, err := a.buildSpec(cmd); err == nil {
			rv = a.runner.Reserve(spec)
		}
	}
	go func() {
		defer a.jobs.wg.Done()
		defer rv.Release() // a job that ends before its turn gives it up
		defer a.jobs.ended(cmd.JobID, cancel)
		res := a.execute(ctx, cmd, rv)
		if err := a.finish(res); err != nil {
			a.log.Error("cannot queue job result", "job_id", cmd.JobID, "error", err)
		}
	}()
}

// cancel ends a job wherever it is: gathered, queued, running, or not
// arrived yet.
func (a *Agent) cancel(jobID string) {
	if cmd, ok := a.gather.take(jobID); ok {
		// Started now only to be cancelled: it ends "cancelled" the usual way.
		a.start(cmd)
	}
	if cancel, ok := a.jobs.cancelFunc(jobID); ok {
		a.log.Info("cancelling job", "job_id", jobID)
		cancel()
		return
	}
	// Not here yet (or already done): leave a tombstone so that a command
	// delivered after its cancel is never run.
	now := time.Now().UTC()
	if fresh, err := a.jr.accept(wire.Command{JobID: jobID, Kind: wire.JobCancel, IssuedAt: now}, now); err == nil && fresh {
		_ = a.jr.setState(jobID, jobDone, now)
		a.log.Info("job cancelled before it arrived", "job_id", jobID)
	}
}

// finish queues the result durably, then marks the job done.
func (a *Agent) finish(res wire.Result) error {
	b, err := wire.Encode(&res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	// A held job is journaled held before its result can reach the
	// console: the approval the console may send at once must find it so.
	held := res.Status == wire.StatusHeld
	if held {
		if err := a.jr.markHeld(res.JobID, time.Now().UTC()); err != nil {
			return err
		}
	}
	if err := a.out.Put(wire.ResultTopic(a.cfg.HostID, res.JobID), b, false); err != nil {
		return err
	}
	if held {
		return nil
	}
	if err := a.jr.setState(res.JobID, jobDone, time.Now().UTC()); err != nil {
		// Left "received" (a full disk), the next start would run a job
		// already reported: forget it instead (a removal needs no space),
		// and ignore copies of it while this process lives.
		a.jobs.refuse(res.JobID)
		if rerr := a.jr.remove(res.JobID); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	return nil
}

func failed(jobID string, started time.Time, msg string) wire.Result {
	return wire.Result{JobID: jobID, Status: wire.StatusFailed, ExitCode: -1, StartedAt: started, EndedAt: time.Now().UTC(), Error: msg}
}
