package harness

import (
	"context"
	"fmt"
	"net/http"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// StartRestServer runs rest-server (bin) without authentication on a free
// loopback port over dir, with extra flags, and waits until it answers.
// The caller owns the process, also when the wait fails.
func StartRestServer(ctx context.Context, bin, dir string, extra ...string) (p *Proc, addr string, err error) {
	if addr, err = testenv.FreeAddr(); err != nil {
		return nil, "", err
	}
	args := append([]string{"--path", dir, "--listen", addr, "--no-auth"}, extra...)
	if p, err = Start(Cmd{Name: "rest-server", Bin: bin, Args: args}); err != nil {
		return nil, "", err
	}
	err = Poll(ctx, 20*time.Second, func() error {
		if err := p.Exited(); err != nil {
			return Permanent(err)
		}
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	if err != nil {
		return p, addr, fmt.Errorf("waiting for rest-server: %w", err)
	}
	return p, addr, nil
}
