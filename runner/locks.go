package runner

import (
	"context"
	"errors"
	"sync"
)

// RepoLocks is a keyed mutex: one holder per key, waiters served in arrival
// order, a wait ends with ctx. Keys nobody holds or waits for are removed,
// so it does not grow. The zero value is ready to use.
type RepoLocks struct {
	mu sync.Mutex
	m  map[string]*keyLock
}

type keyLock struct {
	waiters []chan struct{} // FIFO; closing one hands the lock over
}

// Lock takes key's lock, waiting for the current holder and earlier waiters.
// waited tells whether it had to wait. When ctx ends first it returns
// ctx.Err() and no lock. unlock may be called more than once.
func (l *RepoLocks) Lock(ctx context.Context, key string) (unlock func(), waited bool, err error) {
	if err := ctx.Err(); err != nil {
		return nil, false, err
	}
	return l.Reserve(key).Wait(ctx)
}

// Reservation is a place in a key's queue, taken before the wait. Jobs that
// arrive together are started on goroutines that run in any order; each
// reserves its place as it arrives, so they still take the lock in arrival
// order.
type Reservation struct {
	l   *RepoLocks
	key string
	ch  chan struct{} // closed when the lock is handed over; nil: held from Reserve on

	mu   sync.Mutex
	used bool // Wait or Release was called
}

// Reserve takes a place in key's queue (or the lock itself, when free)
// without waiting. Exactly one of Wait or Release must follow.
func (l *RepoLocks) Reserve(key string) *Reservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	k, held := l.m[key]
	if !held {
		l.m[key] = &keyLock{}
		return &Reservation{l: l, key: key}
	}
	ch := make(chan struct{})
	k.waiters = append(k.waiters, ch)
	return &Reservation{l: l, key: key, ch: ch}
}

func (r *Reservation) take() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.used {
		return false
	}
	r.used = true
	return true
}

// Wait waits for the reserved turn, like Lock. A second call fails.
func (r *Reservation) Wait(ctx context.Context) (unlock func(), waited bool, err error) {
	if !r.take() {
		return nil, false, errors.New("runner: repository lock reservation used twice")
	}
	if r.ch == nil {
		if err := ctx.Err(); err != nil {
			r.l.release(r.key)
			return nil, false, err
		}
		return r.l.unlocker(r.key), false, nil
	}
	select {
	case <-r.ch:
		return r.l.unlocker(r.key), true, nil
	case <-ctx.Done():
	}
	r.l.abandon(r.key, r.ch)
	return nil, true, ctx.Err()
}

// Release gives the place (or the lock) up when the job ends without
// waiting for it. After Wait it does nothing; a nil Reservation is fine.
func (r *Reservation) Release() {
	if r == nil || !r.take() {
		return
	}
	if r.ch == nil {
		r.l.release(r.key)
		return
	}
	r.l.abandon(r.key, r.ch)
}

// abandon takes waiter ch out of key's queue or, when the lock was handed
// to it meanwhile, passes the lock on.
func (l *RepoLocks) abandon(key string, ch chan struct{}) {
	l.mu.Lock()
	if k := l.m[key]; k != nil {
		for i, w := range k.waiters {
			if w == ch {
				k.waiters = append(k.waiters[:i], k.waiters[i+1:]...)
				l.mu.Unlock()
				return
			}
		}
	}
	l.mu.Unlock()
	l.release(key)
}

func (l *RepoLocks) unlocker(key string) func() {
	return sync.OnceFunc(func() { l.release(key) })
}

// release hands key's lock to the first waiter, or forgets key.
func (l *RepoLocks) release(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	k := l.m[key]
	if k == nil {
		return
	}
	if len(k.waiters) == 0 {
		delete(l.m, key)
		return
	}
	next := k.waiters[0]
	k.waiters[0] = nil
	k.waiters = k.waiters[1:]
	close(next)
}

// size is the number of keys held or waited for.
func (l *RepoLocks) size() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.m)
}
