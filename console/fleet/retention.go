package fleet

import (
	"context"
	"time"

	"github.com/restic-manager/restic-manager/internal/loop"
	"github.com/restic-manager/restic-manager/storage"
)

const (
	// retentionEvery: retention deletes by age in days, so hourly is
	// plenty; each run reads only what has expired since the last one.
	retentionEvery = time.Hour
	// retentionFirst delays the first run after start, so a store that
	// has not been purged for a long time is not purged while the fleet
	// reconnects.
	retentionFirst = 2 * time.Minute
)

// retentionPolicy is the store's default policy with the configured job
// retention: zero means the default, negative keeps jobs forever.
func (f *Fleet) retentionPolicy() storage.RetentionPolicy {
	p := storage.DefaultRetention()
	switch {
	case f.opts.JobRetention > 0:
		p.Jobs = f.opts.JobRetention
	case f.opts.JobRetention < 0:
		p.Jobs = 0
	}
	return p
}

// retentionLoop applies the retention policy until ctx ends.
func (f *Fleet) retentionLoop(ctx context.Context) {
	p := f.retentionPolicy()
	loop.Every(ctx, retentionFirst, retentionEvery, func(ctx context.Context) {
		st, err := f.store.ApplyRetention(ctx, p, time.Now().UTC())
		switch {
		case err != nil && ctx.Err() == nil:
			f.log.Error("retention run failed", "error", err)
		case st.Keys > 0:
			f.log.Info("retention: expired records deleted", "jobs", st.Jobs, "audit", st.Audit,
				"alerts", st.Alerts, "keys", st.Keys, "kept_old_jobs", st.Kept, "took", st.Took.Round(time.Millisecond))
		}
	})
}
