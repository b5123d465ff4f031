package fleet

import (
	"context"
	"time"

	"github.com/restic-manager/restic-manager/internal/loop"
	"github.com/restic-manager/restic-manager/storage"
)

// eachJob calls fn for every job q selects, newest first, a page at a
// time, until fn returns false or ctx ends.
func (f *Fleet) eachJob(ctx context.Context, q storage.JobQuery, fn func(storage.Job) bool) error {
	if q.Limit == 0 {
		q.Limit = 500
	}
	for ctx.Err() == nil {
		page, next, err := f.store.ListJobs(q)
		if err != nil {
			return err
		}
		for _, j := range page {
			if !fn(j) {
				return nil
			}
		}
		if next == "" {
			return nil
		}
		q.Cursor = next
	}
	return ctx.Err()
}

// eachOpenJob calls fn for every job young enough to be still open (created
// within the command expiry, plus an hour), newest first: the job index is
// time ordered, so the walk stops at the first older job.
func (f *Fleet) eachOpenJob(ctx context.Context, fn func(storage.Job)) error {
	horizon := time.Now().Add(-f.opts.CommandExpiry - time.Hour)
	return f.eachJob(ctx, storage.JobQuery{}, func(j storage.Job) bool {
		if j.CreatedAt.Before(horizon) {
			return false
		}
		fn(j)
		return true
	})
}

// sweepLoop expires queued jobs whose agent never came back in time. Only
// jobs young enough to be still queued are walked: the index is newest first.
func (f *Fleet) sweepLoop(ctx context.Context) {
	loop.Every(ctx, time.Minute, time.Minute, f.sweep)
}

func (f *Fleet) sweep(ctx context.Context) {
	f.endLostJobs(ctx, time.Now())
	err := f.eachOpenJob(ctx, func(j storage.Job) {
		if j.Status == storage.JobQueued && !j.ExpiresAt.IsZero() && time.Now().After(j.ExpiresAt) {
			f.expire(j.ID)
		}
	})
	if err != nil {
		f.log.Warn("expiry sweep", "error", err)
	}
}
