package harness

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"time"
)

// pollStep is how often Poll tries again.
const pollStep = 100 * time.Millisecond

// Poll calls fn until it returns nil, the timeout passes (the error then
// carries fn's last one), ctx ends, or fn returns an error made by
// Permanent (returned as it is).
func Poll(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		var perm permanent
		if errors.As(err, &perm) {
			return perm.err
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%w (last: %v)", ctx.Err(), err)
		case <-time.After(pollStep):
		}
		if !time.Now().Before(deadline) {
			return fmt.Errorf("timed out after %s: %w", timeout, err)
		}
	}
}

// Permanent marks an error that ends a Poll at once.
func Permanent(err error) error { return permanent{err} }

type permanent struct{ err error }

func (p permanent) Error() string { return p.err.Error() }
func (p permanent) Unwrap() error { return p.err }

// WaitListening polls until p accepts TCP connections on addr, failing at
// once if it exits (with its log, read from logPath).
func WaitListening(ctx context.Context, timeout time.Duration, p *Proc, addr, logPath string) error {
	return Poll(ctx, timeout, func() error {
		if err := p.Exited(); err != nil {
			out, _ := os.ReadFile(logPath)
			return Permanent(fmt.Errorf("exited before listening on %s: %w\n%s", addr, err, out))
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err != nil {
			return err
		}
		return c.Close()
	})
}
