package console

import (
	"context"
	"sync"
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
}

// hostOnline queues host's re-send and starts a worker if fewer than
// maxOnlineWorkers run.
func (c *Console) hostOnline(host string) {
	q := &c.online
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.queued == nil {
		q.queued = map[string]bool{}
	}
	if !q.queued[host] {
		q.queued[host] = true
		q.order = append(q.order, host)
	}
	if q.workers < maxOnlineWorkers {
		q.workers++
		c.goBG(c.onlineWorker)
	}
}

func (c *Console) onlineWorker(ctx context.Context) {
	q := &c.online
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
		q.mu.Unlock()

		c.republishDesired(ctx, host)
		c.redispatch(ctx, host)
	}
}
