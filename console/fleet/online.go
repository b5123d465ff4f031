package fleet

import (
	"context"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// maxOnlineWorkers bounds the goroutines re-sending desired schedules and
// queued jobs to agents that came online.
const maxOnlineWorkers = 8

// onlineQueue holds the hosts that came online and still need their
// desired schedules and queued jobs re-sent. A goroutine per connection
// made a connect storm of 10,000 agents run 10,000 of these at once, each
// with its own stack and job listing (hundreds of MiB at the peak, for
// work that takes a few milliseconds); a few workers drain the queue
// instead, and a host that reconnects while queued is handled once.
type onlineQueue struct {
	mu      sync.Mutex
	order   []string
	queued  map[string]bool
	workers int
	// last is when each host's re-send last ran; a host asks again at most
	// every resendSpacing (an agent publishing status after status must not
	// make the console re-seal and re-send its queued jobs each time), and
	// a request inside that time is deferred to its end, not dropped.
	last     map[string]time.Time
	deferred map[string]*time.Timer
	// seen: hosts this console has seen online since it started.
	seen map[string]bool
}

// resendSpacing is the least time between two re-sends to one host.
const resendSpacing = time.Minute

// firstSeen reports whether this is the first online status of host since
// the console started (and records it).
func (q *onlineQueue) firstSeen(host string) bool {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.seen == nil {
		q.seen = map[string]bool{}
	}
	if q.seen[host] {
		return false
	}
	q.seen[host] = true
	return true
}

// stop cancels the deferred re-sends (at Close).
func (q *onlineQueue) stop() {
	q.mu.Lock()
	defer q.mu.Unlock()
	for _, t := range q.deferred {
		t.Stop()
	}
	q.deferred = nil
}

// hostOnline queues host's re-send and starts a worker if fewer than
// maxOnlineWorkers run.
func (f *Fleet) hostOnline(host string) {
	q := &f.online
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued == nil {
		q.queued, q.last, q.deferred = map[string]bool{}, map[string]time.Time{}, map[string]*time.Timer{}
	}
	if last, ok := q.last[host]; ok && time.Since(last) < resendSpacing {
		if q.deferred[host] == nil && !q.queued[host] {
			q.deferred[host] = time.AfterFunc(resendSpacing-time.Since(last), func() {
				q.mu.Lock()
				delete(q.deferred, host)
				q.mu.Unlock()
				f.hostOnline(host)
			})
		}
		return
	}
	if !q.queued[host] {
		q.queued[host] = true
		q.order = append(q.order, host)
	}
	if q.workers < maxOnlineWorkers && f.goBG(f.onlineWorker) {
		q.workers++
	}
}

func (f *Fleet) onlineWorker(ctx context.Context) {
	q := &f.online
	for {
		q.mu.Lock()
		if len(q.order) == 0 || ctx.Err() != nil {
			q.workers--
			q.mu.Unlock()
			return
		}
		host := q.order[0]
		q.order[0] = ""
		q.order = q.order[1:]
		delete(q.queued, host)
		q.last[host] = time.Now()
		q.mu.Unlock()

		f.republishDesired(ctx, host)
		f.redispatch(ctx, host)
	}
}

// redispatch re-sends a host's queued jobs, oldest first, and expires those
// past their deadline.
func (f *Fleet) redispatch(ctx context.Context, hostID string) {
	h, err := f.store.GetHost(hostID)
	if err != nil {
		return
	}
	var queued []storage.Job
	err = f.eachJob(ctx, storage.JobQuery{HostID: hostID, Status: storage.JobQueued, Limit: 200}, func(j storage.Job) bool {
		queued = append(queued, j)
		return true
	})
	if err != nil {
		f.log.Error("redispatch: list jobs", "host_id", hostID, "error", err)
		return
	}
	now := time.Now()
	for i := len(queued) - 1; i >= 0; i-- {
		j := queued[i]
		if !j.ExpiresAt.IsZero() && now.After(j.ExpiresAt) {
			f.expire(j.ID)
			continue
		}
		if j.Held {
			continue // the repository gate sends it when its turn comes
		}
		if err := f.dispatch(j, h); err != nil {
			f.log.Warn("redispatch failed", "job_id", j.ID, "error", err)
		}
	}
}
