package agent

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

func (a *Agent) cancel(jobID string) {
	if cmd, ok := a.takeGathered(jobID); ok {
		// Started now only to be cancelled: it ends "cancelled" the usual way.
		a.start(cmd)
	}
	a.mu.Lock()
	cancel, ok := a.running[jobID]
	a.mu.Unlock()
	if ok {
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

// start runs a job in its own goroutine, owned by the agent's WaitGroup.
func (a *Agent) start(cmd wire.Command) {
	ctx, cancel := context.WithCancel(a.jobsCtx)
	a.mu.Lock()
	if _, dup := a.running[cmd.JobID]; dup || a.jobsCtx.Err() != nil {
		a.mu.Unlock()
		cancel()
		return
	}
	// Only a job still "received" starts: recovery after a restart and the
	// gathering window may both hold one that already ran.
	if e, ok, err := a.jr.get(cmd.JobID); err != nil || !ok || e.State != jobReceived {
		a.mu.Unlock()
		cancel()
		return
	}
	a.running[cmd.JobID] = cancel
	// Added under a.mu: shutdown cancels jobsCtx under a.mu before it
	// waits, so no job is added to a WaitGroup being waited on.
	a.wg.Add(1)
	a.mu.Unlock()
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
		defer a.wg.Done()
		defer rv.Release() // a job that ends before its turn gives it up
		defer func() {
			a.mu.Lock()
			delete(a.running, cmd.JobID)
			a.mu.Unlock()
			cancel()
		}()
		res := a.execute(ctx, cmd, rv)
		if err := a.finish(res); err != nil {
			a.log.Error("cannot queue job result", "job_id", cmd.JobID, "error", err)
		}
	}()
}

// finish queues the result durably, then marks the job done.
func (a *Agent) finish(res wire.Result) error {
	b, err := wire.Encode(&res)
	if err != nil {
		return fmt.Errorf("encode result: %w", err)
	}
	if err := a.out.Put(wire.ResultTopic(a.cfg.HostID, res.JobID), b, false); err != nil {
		return err
	}
	if err := a.jr.setState(res.JobID, jobDone, time.Now().UTC()); err != nil {
		// Left "received" (a full disk), the next start would run a job
		// already reported: forget it instead (a removal needs no space),
		// and ignore copies of it while this process lives.
		a.mu.Lock()
		a.refused[res.JobID] = true
		a.mu.Unlock()
		if rerr := a.jr.remove(res.JobID); rerr != nil {
			return errors.Join(err, rerr)
		}
	}
	return nil
}

func failed(jobID string, started time.Time, msg string) wire.Result {
	return wire.Result{JobID: jobID, Status: wire.StatusFailed, ExitCode: -1, StartedAt: started, EndedAt: time.Now().UTC(), Error: msg}
}
