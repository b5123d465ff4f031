package fleet

import (
	"context"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/internal/loop"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// dispatchGrace is how long a job just sent to an online agent counts as
// occupying its repository before the agent reports it started.
const dispatchGrace = 2 * time.Minute

// gate keeps exclusive operations (check, forget, prune) alone on their
// repository, across hosts, as far as the console knows: an exclusive job is
// held while any other job on the repository runs; any job is held while an
// exclusive one runs or waits ahead of it (first come, first served, so a
// stream of backups cannot starve a prune). restic's own locks (and
// --retry-lock on the agent) remain the last line.
type gate struct {
	f *Fleet
	// mu guards held and orders admission against release: a job admitted
	// while held jobs of its repository wait must queue behind them.
	mu sync.Mutex
	// held lists, per repository, the jobs waiting for it in order.
	held map[string][]string
	// busy is what occupies each repository.
	busy *occupancy
}

// occupancy records the jobs occupying each repository (dispatched, not
// ended). It has its own lock: progress ingest marks jobs started without
// waiting for a release in progress.
type occupancy struct {
	mu   sync.Mutex
	jobs map[string]map[string]busyJob
}

type busyJob struct {
	exclusive  bool
	started    bool
	dispatched time.Time
}

func newGate(f *Fleet) *gate {
	return &gate{f: f, held: map[string][]string{}, busy: &occupancy{jobs: map[string]map[string]busyJob{}}}
}

func exclusive(kind string) bool {
	k, _ := wire.LookupKind(kind)
	return k.Exclusive
}

// occupied reports whether a job of this kind must wait on repo now.
func (g *occupancy) occupied(repo string, exclusive bool, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.jobs[repo] {
		live := b.started || now.Sub(b.dispatched) < dispatchGrace
		if !live {
			continue
		}
		if exclusive || b.exclusive {
			return true
		}
	}
	return false
}

func (g *occupancy) enter(repo, job string, exclusive bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.jobs[repo] == nil {
		g.jobs[repo] = map[string]busyJob{}
	}
	g.jobs[repo][job] = busyJob{exclusive: exclusive, dispatched: now}
}

func (g *occupancy) started(repo, job string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.jobs[repo][job]; ok {
		b.started = true
		g.jobs[repo][job] = b
	}
}

func (g *occupancy) leave(repo, job string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.jobs[repo], job)
	if len(g.jobs[repo]) == 0 {
		delete(g.jobs, repo)
	}
}

// admit decides, under the gate's rules, whether a new job goes out now or
// is held. Held jobs of the repository that came earlier go first.
func (g *gate) admit(j *storage.Job) (dispatchNow bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	now := time.Now()
	for _, r := range repoIDs(*j) {
		if g.busy.occupied(r, exclusive(j.Kind), now) || len(g.held[r]) > 0 {
			j.Held, j.Waited = true, true
			return false
		}
	}
	g.enter(*j, now)
	return true
}

// repoIDs are the repositories a job occupies: its own, and a copy's
// destination (which it writes: it waits for exclusive work there too).
func repoIDs(j storage.Job) []string {
	if to := CopyDest(j.Kind, j.Args); to != "" && to != j.RepoID {
		return []string{j.RepoID, to}
	}
	return []string{j.RepoID}
}

func (g *gate) enter(j storage.Job, at time.Time) {
	for _, r := range repoIDs(j) {
		g.busy.enter(r, j.ID, exclusive(j.Kind), at)
	}
}

// leave frees a job's place (an end, or a job admitted but not stored).
func (g *gate) leave(j storage.Job) {
	for _, r := range repoIDs(j) {
		g.busy.leave(r, j.ID)
	}
}

// started marks a job running: it occupies its repository until it ends,
// however long past dispatchGrace.
func (g *gate) started(j storage.Job) {
	for _, r := range repoIDs(j) {
		g.busy.started(r, j.ID)
	}
}

// release sends held jobs of a repository, oldest first, while the rules
// allow. It runs after any job on the repository ends, and on a timer.
func (g *gate) release(repo string) {
	f := g.f
	g.mu.Lock()
	defer g.mu.Unlock()
	for len(g.held[repo]) > 0 {
		id := g.held[repo][0]
		j, err := f.store.GetJob(id)
		if err != nil || j.Status != storage.JobQueued || !j.Held {
			g.held[repo] = g.held[repo][1:]
			continue
		}
		now := time.Now()
		if g.occupiedAny(j, now) {
			return
		}
		j, err = f.store.UpdateJob(id, func(j *storage.Job) error {
			if j.Status != storage.JobQueued {
				return errNoChange
			}
			j.Held = false
			return nil
		})
		g.held[repo] = g.held[repo][1:]
		if err != nil {
			continue
		}
		g.enter(j, now)
		h, err := f.store.GetHost(j.HostID)
		if err == nil {
			err = f.dispatch(j, h)
		}
		if err != nil {
			f.log.Error("dispatch of a released job failed; it stays queued", "job_id", id, "error", err)
		}
		f.log.Debug("job released: repository free", "job_id", id, "repo_id", repo, "kind", j.Kind)
	}
	if len(g.held[repo]) == 0 {
		delete(g.held, repo)
	}
}

// hold queues a held job behind the others of its repository. The job
// that kept it out may have ended between admit and now (its release found
// nothing held yet): so look again at once, rather than at the next tick.
func (g *gate) hold(j storage.Job) {
	g.mu.Lock()
	for _, r := range repoIDs(j) { // a copy waits in its destination's line too
		g.held[r] = append(g.held[r], j.ID)
	}
	g.mu.Unlock()
	g.f.log.Debug("job held: repository busy", "job_id", j.ID, "repo_id", j.RepoID, "kind", j.Kind)
	for _, r := range repoIDs(j) {
		g.release(r)
	}
}

// occupiedAny: j must wait on one of its repositories (a copy held in its
// source's line may not go while its destination is busy).
func (g *gate) occupiedAny(j storage.Job, now time.Time) bool {
	for _, r := range repoIDs(j) {
		if g.busy.occupied(r, exclusive(j.Kind), now) {
			return true
		}
	}
	return false
}

// jobEnded is the gate's observer of a job's end: the job's place is free
// and the next ones may go.
func (g *gate) jobEnded(j storage.Job) {
	for _, r := range repoIDs(j) {
		g.busy.leave(r, j.ID)
		g.release(r)
	}
}

// restore rebuilds the gate after a restart from the jobs still open.
func (g *gate) restore(ctx context.Context) {
	var held []storage.Job
	err := g.f.eachOpenJob(ctx, func(j storage.Job) {
		switch {
		case storage.TerminalStatus(j.Status), j.Status == storage.JobHeld:
		case j.Held:
			held = append(held, j)
		default:
			g.enter(j, j.CreatedAt)
			if j.Status == storage.JobRunning {
				g.started(j)
			}
		}
	})
	if err != nil {
		g.f.log.Error("rebuilding the repository gate", "error", err)
		return
	}
	g.mu.Lock()
	for i := len(held) - 1; i >= 0; i-- { // the index is newest first
		for _, r := range repoIDs(held[i]) {
			g.held[r] = append(g.held[r], held[i].ID)
		}
	}
	g.mu.Unlock()
	g.releaseAll()
}

func (g *gate) releaseAll() {
	g.mu.Lock()
	repos := make([]string, 0, len(g.held))
	for r := range g.held {
		repos = append(repos, r)
	}
	g.mu.Unlock()
	for _, r := range repos {
		g.release(r)
	}
}

// loop re-checks held jobs now and then: a dispatched job that never
// started stops occupying its repository after dispatchGrace.
func (g *gate) loop(ctx context.Context) {
	g.restore(ctx)
	loop.Every(ctx, 15*time.Second, 15*time.Second, func(context.Context) { g.releaseAll() })
}
