// Package enrol is how hosts join and leave the fleet and what they log in
// with: hosts made with a one-time token, or by the agent itself with a
// reusable enrolment key carrying labels; the broker credentials they get;
// revocation and deletion; read-only integration accounts; and an external
// broker's account files. It speaks no HTTP; the fleet ends a removed
// host's jobs and re-applies the policies of a host with new labels.
package enrol

import (
	"context"
	"log/slog"
	"sync"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
)

// Options configure Enrol.
type Options struct {
	Fleet  *fleet.Fleet
	Logger *slog.Logger
	// BrokerAccounts, when set (external broker mode), receives every
	// broker login after each credential change: the agents' and
	// integrations' password hashes.
	BrokerAccounts func([]broker.Account) error
}

// Enrol manages hosts' enrolment and credentials.
type Enrol struct {
	opts  Options
	f     *fleet.Fleet
	store *storage.Store
	pub   fleet.Publisher
	log   *slog.Logger

	brokerSync brokerSync

	ctx    context.Context
	cancel context.CancelFunc
	bg     sync.WaitGroup
}

var _ broker.Authenticator = (*Enrol)(nil)

// New starts Enrol (an external broker's account writer, when set); Close
// stops it.
func New(opts Options) *Enrol {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	e := &Enrol{opts: opts, f: opts.Fleet, store: opts.Fleet.Store(), pub: opts.Fleet.Publisher(), log: opts.Logger.With("component", "enrol")}
	e.ctx, e.cancel = context.WithCancel(context.Background())
	e.startBrokerSync()
	return e
}

// Close stops the account writer.
func (e *Enrol) Close() {
	e.cancel()
	e.bg.Wait()
}

func (e *Enrol) goBG(fn func(ctx context.Context)) {
	e.bg.Add(1)
	go func() {
		defer e.bg.Done()
		fn(e.ctx)
	}()
}
