package enrol

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/broker"
)

// brokerSync regenerates an external broker's accounts from the store after
// every credential change. Requests coalesce: a burst of enrolments costs
// one regeneration, and each caller waits for one that started after its
// change, so an agent enrolled a moment ago can log in when the call returns.
type brokerSync struct {
	mu      sync.Mutex
	cond    *sync.Cond
	wanted  uint64 // generation asked for
	done    uint64 // last generation written
	lastErr error
	kick    chan struct{}
}

func (e *Enrol) startBrokerSync() {
	if e.opts.BrokerAccounts == nil {
		return
	}
	bs := &e.brokerSync
	bs.cond = sync.NewCond(&bs.mu)
	bs.kick = make(chan struct{}, 1)
	e.goBG(func(ctx context.Context) {
		for {
			select {
			case <-ctx.Done():
				bs.mu.Lock()
				bs.lastErr = ctx.Err()
				bs.done = bs.wanted
				bs.cond.Broadcast()
				bs.mu.Unlock()
				return
			case <-bs.kick:
			}
			bs.mu.Lock()
			gen := bs.wanted
			bs.mu.Unlock()
			err := e.writeBrokerAccounts()
			if err != nil {
				e.log.Error("external broker accounts not written", "error", err)
			}
			bs.mu.Lock()
			bs.done, bs.lastErr = gen, err
			bs.cond.Broadcast()
			bs.mu.Unlock()
		}
	})
	// The accounts at start: the console's own login among them.
	if err := e.SyncBrokerAccounts(context.Background()); err != nil {
		e.log.Error("external broker accounts at start", "error", err)
	}
}

// SyncBrokerAccounts asks for a regeneration and waits for it (or ctx).
// Without an external broker it does nothing.
func (e *Enrol) SyncBrokerAccounts(ctx context.Context) error {
	if e.opts.BrokerAccounts == nil {
		return nil
	}
	bs := &e.brokerSync
	bs.mu.Lock()
	bs.wanted++
	gen := bs.wanted
	bs.mu.Unlock()
	select {
	case bs.kick <- struct{}{}:
	default: // a regeneration is already due; it reads wanted afresh
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	stop := context.AfterFunc(ctx, func() {
		bs.mu.Lock()
		bs.cond.Broadcast()
		bs.mu.Unlock()
	})
	defer stop()
	bs.mu.Lock()
	defer bs.mu.Unlock()
	for bs.done < gen && ctx.Err() == nil {
		bs.cond.Wait()
	}
	if bs.done < gen {
		return fmt.Errorf("external broker accounts: %w", ctx.Err())
	}
	return bs.lastErr
}

// writeBrokerAccounts lists every login: enrolled hosts and integration
// users whose broker hash is known. Hosts enrolled before this console
// version have none and need a new enrolment token to reach an external
// broker.
func (e *Enrol) writeBrokerAccounts() error {
	var accounts []broker.Account
	missing := 0
	after := ""
	for {
		hosts, err := e.store.ListHosts(after, 0)
		if err != nil {
			return err
		}
		for _, h := range hosts {
			switch {
			case !h.Enrolled:
			case h.BrokerHash == "":
				missing++
			default:
				accounts = append(accounts, broker.Account{Username: h.ID, Hash: h.BrokerHash, Role: broker.AccountAgent})
			}
		}
		if len(hosts) == 0 {
			break
		}
		after = hosts[len(hosts)-1].ID
	}
	users, err := e.store.ListIntegrationUsers()
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.BrokerHash != "" {
			accounts = append(accounts, broker.Account{Username: u.Name, Hash: u.BrokerHash, Role: broker.AccountIntegration})
		}
	}
	if missing > 0 {
		e.log.Warn("enrolled hosts without an external-broker password hash cannot log in there; issue each a new enrolment token", "hosts", missing)
	}
	if err := e.opts.BrokerAccounts(accounts); err != nil {
		return errors.Join(errors.New("write external broker accounts"), err)
	}
	return nil
}
