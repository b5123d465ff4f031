// Package loop runs periodic background work until its context ends.
package loop

import (
	"context"
	"time"
)

// Every calls fn after first, then every interval, until ctx ends. fn runs
// on the caller's goroutine: a slow run delays the next one instead of
// overlapping it.
func Every(ctx context.Context, first, interval time.Duration, fn func(ctx context.Context)) {
	t := time.NewTimer(first)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fn(ctx)
		t.Reset(interval)
	}
}
