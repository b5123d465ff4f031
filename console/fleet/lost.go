package fleet

import (
	"context"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// lostGrace (Options.LostGrace) is how long after an agent listed the jobs it runs (in its
// status, at each connection) a job the console believes running, that the
// agent did not list and that sent nothing since, is declared lost. An
// agent delivers the results of jobs that ended while it was away within
// seconds of connecting; this leaves them ample time.
const lostGrace = 2 * time.Minute

// lostJobs keeps, per host, the jobs its agent said it runs at its latest
// connection, until the sweep has compared them with the store.
type lostJobs struct {
	mu      sync.Mutex
	reports map[string]runningReport
}

type runningReport struct {
	jobs map[string]bool
	at   time.Time
}

func (l *lostJobs) note(host string, jobs []string, at time.Time) {
	set := make(map[string]bool, len(jobs))
	for _, j := range jobs {
		set[j] = true
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.reports == nil {
		l.reports = map[string]runningReport{}
	}
	l.reports[host] = runningReport{jobs: set, at: at}
}

// due takes the reports older than grace.
func (l *lostJobs) due(now time.Time, grace time.Duration) map[string]runningReport {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := map[string]runningReport{}
	for host, r := range l.reports {
		if now.Sub(r.at) >= grace {
			out[host] = r
			delete(l.reports, host)
		}
	}
	return out
}

// endLostJobs ends, for each host whose report is due, the jobs the console
// believes running that its agent did not list and that sent no progress
// since: the agent lost them (reinstalled, journal gone), and they would
// otherwise hold their repository forever. A result that still arrives
// replaces this end.
func (f *Fleet) endLostJobs(ctx context.Context, now time.Time) {
	for host, r := range f.lost.due(now, f.opts.LostGrace) {
		err := f.eachJob(ctx, storage.JobQuery{HostID: host, Status: storage.JobRunning}, func(j storage.Job) bool {
			j = f.LiveJob(j) // progress not written yet counts
			if r.jobs[j.ID] || j.Progress != nil && j.Progress.UpdatedAt.After(r.at) {
				return true
			}
			if _, err := f.endByConsole(j.ID, storage.JobFailed,
				"the agent lost this job: it did not list it as running when it reconnected, and reported nothing since", storage.JobRunning); err == nil {
				f.log.Warn("job lost by its agent", "job_id", j.ID, "host_id", host)
			}
			return true
		})
		if err != nil {
			f.log.Warn("lost jobs not checked", "host_id", host, "error", err)
		}
	}
}
