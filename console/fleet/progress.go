package fleet

import (
	"context"
	"errors"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/progress"
	"github.com/restic-manager/restic-manager/storage"
)

// progressWriteBehind is how often the progress kept in memory
// (console/progress) is written to the store: a crash loses at most this
// much of a running job's progress; its result never.
const progressWriteBehind = time.Second

// progressWriters write one round's progress side by side, so that the
// store's group commit batches them (500 streaming jobs in one round are
// then a few commits, not 500 one after the other).
const progressWriters = 8

// progressLoop writes the progress kept in memory behind, every
// progressWriteBehind, and once more when the fleet stops.
func (f *Fleet) progressLoop(ctx context.Context) {
	t := time.NewTicker(progressWriteBehind)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			f.writeProgress()
			return
		case <-t.C:
			f.writeProgress()
		}
	}
}

// writeProgress stores the pending progress of every running job.
func (f *Fleet) writeProgress() {
	pending := f.progress.TakeDirty()
	if len(pending) == 0 {
		return
	}
	work := make(chan progress.Pending)
	var wg sync.WaitGroup
	for range min(progressWriters, len(pending)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				_, err := f.store.UpdateJob(p.JobID, func(j *storage.Job) error {
					if storage.TerminalStatus(j.Status) || j.Progress != nil && j.Progress.Seq >= p.Progress.Seq {
						return errNoChange // its result (with this progress) came first
					}
					pr := p.Progress
					j.Progress, j.Waited = &pr, j.Waited || p.Waited
					return nil
				})
				switch {
				case errors.Is(err, errNoChange), errors.Is(err, storage.ErrNotFound):
				case err != nil:
					f.progress.Requeue(p)
					f.log.Warn("progress not written; retried", "job_id", p.JobID, "error", err)
				}
			}
		}()
	}
	for _, p := range pending {
		work <- p
	}
	close(work)
	wg.Wait()
}

// LiveJob puts the progress not yet written onto a job read from the
// store: what GET /jobs/{id} and the first SSE event show.
func (f *Fleet) LiveJob(j storage.Job) storage.Job {
	f.progress.Overlay(&j)
	return j
}
