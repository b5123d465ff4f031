package agent

import (
	"context"
	"sync"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/wire"
)

// outputWindow is how many messages of one job's output (index chunks,
// ~500 KB each) are in flight at once. With one, every chunk waited for the
// previous one's PUBACK, i.e. for the console to store and sync it, and the
// agent's next publish (read from the outbox, written to the socket) only
// began after that: the console sat idle between chunks. Chunks are
// idempotent and independent of their order (the console keys each node by
// its path), so a window reorders nothing that matters; the job's result
// still goes only after all of them.
const outputWindow = 4

// sendOutbox delivers the outbox's messages (results, fires, schedule
// reports, index chunks) in order, each only after the previous one was
// acknowledged — consecutive output chunks of one job excepted, up to
// outputWindow at once: across disconnects it waits for the session, and
// what is left at shutdown stays queued for the next start. It runs until
// ctx ends.
func (a *Agent) sendOutbox(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for {
		msgs, err := a.out.PeekN(outputWindow)
		if err != nil {
			a.log.Error("outbox", "error", err)
		}
		if len(msgs) == 0 {
			select {
			case <-ctx.Done():
				return
			case <-a.out.notify:
				continue
			}
		}
		batch := msgs[:1]
		if t, err := wire.ParseTopic(msgs[0].Topic); err == nil && t.Kind == wire.KindOutput {
			for len(batch) < len(msgs) && msgs[len(batch)].Topic == msgs[0].Topic {
				batch = msgs[:len(batch)+1]
			}
		}
		if err := a.cm.AwaitConnection(ctx); err != nil {
			return
		}
		type sent struct {
			pr  *paho.PublishResponse
			err error
		}
		res := make([]sent, len(batch))
		var wg sync.WaitGroup
		for i, m := range batch {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
				defer cancel()
				res[i].pr, res[i].err = a.cm.Publish(pctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: 1, Retain: m.Retain})
			}()
		}
		wg.Wait()
		failed := false
		for i, m := range batch {
			switch r := res[i]; {
			case r.err == nil:
				_ = a.out.Remove(m)
			case r.pr != nil && permanentReason(r.pr.ReasonCode):
				a.log.Error("console refused a queued message; dropping it", "topic", m.Topic, "reason_code", r.pr.ReasonCode)
				_ = a.out.Remove(m)
			default:
				// Kept: sent again, with whatever of the window is left.
				a.log.Warn("queued message not delivered yet", "topic", m.Topic, "error", r.err)
				failed = true
			}
		}
		if !failed {
			backoff = 500 * time.Millisecond
			continue
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(backoff):
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// kickSender has the sender look at the outbox again, as Put does; a
// sender already busy with a message is not disturbed.
func (a *Agent) kickSender() {
	select {
	case a.out.notify <- struct{}{}:
	default:
	}
}

// drainOutbox waits up to limit for the sender to empty the outbox; whatever
// is left goes at the next start.
func (a *Agent) drainOutbox(limit time.Duration) {
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	for a.out.Len() > 0 && ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-time.After(100 * time.Millisecond):
		}
	}
}

// permanentReason: PUBACK codes that resending cannot change.
func permanentReason(code byte) bool {
	switch code {
	case 0x87, 0x90, 0x99: // not authorized, topic name invalid, payload format invalid
		return true
	}
	return false
}
