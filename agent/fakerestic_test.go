package agent

import (
	"context"
	"encoding/json"
	"errors"
	"slices"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/runner"
)

// fakeRestic stands in for restic behind the runner's API. It keeps the
// runner's contract that matters to the agent: a run waits for its
// repository's lock (its reservation, when it has one, on the runner's own
// RepoLocks), calls OnLocked once it holds it, and ends "cancelled" when
// its context ends. Jobs are told apart by their backup tag.
type fakeRestic struct {
	locks runner.RepoLocks

	mu     sync.Mutex
	calls  []string                 // jobs, as each run began
	locked []string                 // jobs, in the order they held their repository's lock
	hold   map[string]chan struct{} // jobs that run until released or cancelled
	specs  map[string]runner.Spec   // each job's spec, as its run began
}

var _ resticRunner = (*fakeRestic)(nil)

func newFakeRestic() *fakeRestic {
	return &fakeRestic{hold: map[string]chan struct{}{}, specs: map[string]runner.Spec{}}
}

func (f *fakeRestic) Version(context.Context) (string, error) { return "0.18.1", nil }

func (f *fakeRestic) Reserve(spec runner.Spec) *runner.Reservation {
	return f.locks.Reserve(spec.Repo.URL)
}

func (f *fakeRestic) LsStream(context.Context, runner.Repo, string, func(runner.Node) error) error {
	return errors.New("fakeRestic: no index jobs in these tests")
}

func (f *fakeRestic) Run(ctx context.Context, spec runner.Spec, h runner.Hooks) runner.Result {
	defer spec.Reservation.Release()
	// The job is named by the run's first tag.
	job := ""
	switch spec.Kind {
	case runner.KindForget:
		job = spec.Forget.Tags[0]
	case runner.KindCopy:
		job = spec.Copy.Hostname // copies are named by their host
	default:
		job = spec.Backup.Tags[0]
	}
	f.mu.Lock()
	f.calls = append(f.calls, job)
	f.specs[job] = spec
	gate := f.hold[job]
	f.mu.Unlock()

	res := runner.Result{ExitCode: -1}
	var unlock func()
	var err error
	if spec.Reservation != nil {
		unlock, res.Waited, err = spec.Reservation.Wait(ctx)
	} else {
		unlock, res.Waited, err = f.locks.Lock(ctx, spec.Repo.URL)
	}
	if err != nil {
		res.Status, res.Error, res.EndedAt = runner.StatusCancelled, "cancelled while waiting for the repository lock", time.Now()
		return res
	}
	defer unlock()
	if h.OnLocked != nil {
		if err := h.OnLocked(); err != nil {
			res.Status, res.Error, res.EndedAt = runner.StatusFailed, err.Error(), time.Now()
			return res
		}
	}
	f.mu.Lock()
	f.locked = append(f.locked, job)
	f.mu.Unlock()
	res.StartedAt = time.Now()
	if h.OnStart != nil {
		h.OnStart(res.StartedAt)
	}
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			res.Status, res.ExitCode, res.Error, res.EndedAt = runner.StatusCancelled, 130, "cancelled", time.Now()
			return res
		}
	}
	if spec.Forget.Guard != nil {
		// A guarded forget: this fake's preview always finds too much.
		res.Status, res.ExitCode, res.Error, res.EndedAt = runner.StatusHeld, 0, "held: would remove 3 of 4", time.Now()
		return res
	}
	if h.OnProgress != nil {
		h.OnProgress(runner.Progress{Percent: 100, FilesDone: 1, TotalFiles: 1})
	}
	if spec.Kind == runner.KindCopy {
		res.Output = json.RawMessage(`{"copied":["0123abcd"],"skipped":2}`)
	}
	res.Status, res.ExitCode, res.EndedAt = runner.StatusSucceeded, 0, time.Now()
	return res
}

// spec is the spec job ran with.
func (f *fakeRestic) spec(job string) (runner.Spec, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	s, ok := f.specs[job]
	return s, ok
}

// holdJob makes a job run until release (or a cancel).
func (f *fakeRestic) holdJob(job string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.hold[job] = make(chan struct{})
}

func (f *fakeRestic) release(job string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	close(f.hold[job])
}

func (f *fakeRestic) runs() (calls, locked []string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return slices.Clone(f.calls), slices.Clone(f.locked)
}

// count is how many runs job had.
func (f *fakeRestic) count(job string) int {
	calls, _ := f.runs()
	n := 0
	for _, c := range calls {
		if c == job {
			n++
		}
	}
	return n
}
