package agent

import (
	"context"
	"time"

	"github.com/eclipse/paho.golang/paho"
)

// sendOutbox delivers the outbox's messages (results, fires, schedule
// reports, index chunks) in order, each only after the previous one was
// acknowledged: across disconnects it waits for the session, and what is
// left at shutdown stays queued for the next start. It runs until ctx ends.
func (a *Agent) sendOutbox(ctx context.Context) {
	backoff := 500 * time.Millisecond
	for {
		m, ok, err := a.out.Peek()
		if err != nil {
			a.log.Error("outbox", "error", err)
		}
		if !ok {
			select {
			case <-ctx.Done():
				return
			case <-a.out.notify:
				continue
			}
		}
		if err := a.cm.AwaitConnection(ctx); err != nil {
			return
		}
		pctx, cancel := context.WithTimeout(ctx, 15*time.Second)
		pr, err := a.cm.Publish(pctx, &paho.Publish{Topic: m.Topic, Payload: m.Payload, QoS: 1, Retain: m.Retain})
		cancel()
		switch {
		case err == nil:
			_ = a.out.Remove(m)
			backoff = 500 * time.Millisecond
			continue
		case pr != nil && permanentReason(pr.ReasonCode):
			a.log.Error("console refused a queued message; dropping it", "topic", m.Topic, "reason_code", pr.ReasonCode)
			_ = a.out.Remove(m)
			continue
		}
		a.log.Warn("queued message not delivered yet", "topic", m.Topic, "error", err)
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
