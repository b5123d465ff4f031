package console

import (
	"context"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// dispatchGrace is how long a job just sent to an online agent counts as
// occupying its repository before the agent reports it started.
const dispatchGrace = 2 * time.Minute

// repoGate keeps exclusive operations (check, forget, prune) alone on their
// repository, across hosts, as far as the console knows: an exclusive job is
// held while any other job on the repository runs; any job is held while an
// exclusive one runs or waits ahead of it (first come, first served, so a
// stream of backups cannot starve a prune). restic's own locks (and
// --retry-lock on the agent) remain the last line.
type repoGate struct {
	mu sync.Mutex
	// busy: jobs occupying a repository (dispatched, not ended).
	busy map[string]map[string]busyJob
}

type busyJob struct {
	exclusive  bool
	started    bool
	dispatched time.Time
}

func newRepoGate() *repoGate { return &repoGate{busy: map[string]map[string]busyJob{}} }

// occupied reports whether a job of this kind must wait on repo now.
func (g *repoGate) occupied(repo string, exclusive bool, now time.Time) bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.busy[repo] {
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

func (g *repoGate) enter(repo, job string, exclusive bool, now time.Time) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.busy[repo] == nil {
		g.busy[repo] = map[string]busyJob{}
	}
	g.busy[repo][job] = busyJob{exclusive: exclusive, dispatched: now}
}

func (g *repoGate) started(repo, job string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if b, ok := g.busy[repo][job]; ok {
		b.started = true
		g.busy[repo][job] = b
	}
}

func (g *repoGate) leave(repo, job string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	delete(g.busy[repo], job)
	if len(g.busy[repo]) == 0 {
		delete(g.busy, repo)
	}
}

// admit decides, under the gate's rules, whether a new job goes out now or
// is held. Held jobs of the repository that came earlier go first.
func (c *Console) admit(j *storage.Job) (dispatchNow bool) {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	now := time.Now()
	if c.gate.occupied(j.RepoID, exclusiveKinds[j.Kind], now) || c.heldAhead(j.RepoID) {
		j.Held, j.Waited = true, true
		return false
	}
	c.gate.enter(j.RepoID, j.ID, exclusiveKinds[j.Kind], now)
	return true
}

// heldAhead reports whether the repository already has held jobs (which go
// first). The caller holds gateMu.
func (c *Console) heldAhead(repo string) bool {
	return len(c.held[repo]) > 0
}

// release sends held jobs of a repository, oldest first, while the rules
// allow. It runs after any job on the repository ends or starts, and on a
// timer.
func (c *Console) release(repo string) {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	for len(c.held[repo]) > 0 {
		id := c.held[repo][0]
		j, err := c.store.GetJob(id)
		if err != nil || j.Status != storage.JobQueued || !j.Held {
			c.held[repo] = c.held[repo][1:]
			continue
		}
		now := time.Now()
		if c.gate.occupied(repo, exclusiveKinds[j.Kind], now) {
			return
		}
		j, err = c.store.UpdateJob(id, func(j *storage.Job) error {
			if j.Status != storage.JobQueued {
				return errNoChange
			}
			j.Held = false
			return nil
		})
		c.held[repo] = c.held[repo][1:]
		if err != nil {
			continue
		}
		c.gate.enter(repo, id, exclusiveKinds[j.Kind], now)
		h, err := c.store.GetHost(j.HostID)
		if err == nil {
			err = c.dispatch(j, h)
		}
		if err != nil {
			c.log.Error("dispatch of a released job failed; it stays queued", "job_id", id, "error", err)
		}
		c.log.Debug("job released: repository free", "job_id", id, "repo_id", repo, "kind", j.Kind)
	}
	if len(c.held[repo]) == 0 {
		delete(c.held, repo)
	}
}

// hold queues a held job behind the others of its repository.
func (c *Console) hold(j storage.Job) {
	c.gateMu.Lock()
	defer c.gateMu.Unlock()
	c.held[j.RepoID] = append(c.held[j.RepoID], j.ID)
	c.log.Debug("job held: repository busy", "job_id", j.ID, "repo_id", j.RepoID, "kind", j.Kind)
}

// jobEnded frees the job's place and lets the next ones go.
func (c *Console) jobEnded(j storage.Job) {
	c.gate.leave(j.RepoID, j.ID)
	c.release(j.RepoID)
	c.repoJobEnded(j)
	c.metrics.jobEnded(j)
	c.jobAlert(j)
	if h, err := c.store.GetHost(j.HostID); err == nil {
		c.publishHealth(h)
	}
}

// restoreGate rebuilds the gate after a restart from the jobs still open.
func (c *Console) restoreGate(ctx context.Context) {
	var held []storage.Job
	err := c.eachOpenJob(ctx, func(j storage.Job) {
		switch {
		case storage.TerminalStatus(j.Status):
		case j.Held:
			held = append(held, j)
		default:
			c.gate.enter(j.RepoID, j.ID, exclusiveKinds[j.Kind], j.CreatedAt)
			if j.Status == storage.JobRunning {
				c.gate.started(j.RepoID, j.ID)
			}
		}
	})
	if err != nil {
		c.log.Error("rebuilding the repository gate", "error", err)
		return
	}
	c.gateMu.Lock()
	for i := len(held) - 1; i >= 0; i-- { // the index is newest first
		c.held[held[i].RepoID] = append(c.held[held[i].RepoID], held[i].ID)
	}
	repos := make([]string, 0, len(c.held))
	for r := range c.held {
		repos = append(repos, r)
	}
	c.gateMu.Unlock()
	for _, r := range repos {
		c.release(r)
	}
}

// gateLoop re-checks held jobs now and then: a dispatched job that never
// started stops occupying its repository after dispatchGrace.
func (c *Console) gateLoop(ctx context.Context) {
	c.restoreGate(ctx)
	t := time.NewTicker(15 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		c.gateMu.Lock()
		repos := make([]string, 0, len(c.held))
		for r := range c.held {
			repos = append(repos, r)
		}
		c.gateMu.Unlock()
		for _, r := range repos {
			c.release(r)
		}
	}
}
