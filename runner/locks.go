package runner

import (
	"context"
	"errors"
	"slices"
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

	// next is the reservation of the run's next key (ReserveAll): a copy
	// holds its source and its destination.
	next *Reservation
}

// Reserve takes a place in key's queue (or the lock itself, when free)
// without waiting. Exactly one of Wait or Release must follow.
func (l *RepoLocks) Reserve(key string) *Reservation {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reserve(key)
}

// ReserveAll reserves several keys (duplicates count once) at one moment,
// for a run that holds them all (a copy: its source and its destination).
// Taking every place at once keeps the queues of all keys in one order —
// the order of the reservations — and a run only ever waits for runs
// reserved before it: two copies between the same repositories in
// opposite directions cannot each hold one and wait for the other. The
// keys are waited for in sorted order.
func (l *RepoLocks) ReserveAll(keys ...string) *Reservation {
	keys = l.sortKeys(keys)
	if len(keys) == 0 {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	first := l.reserve(keys[0])
	last := first
	for _, k := range keys[1:] {
		last.next = l.reserve(k)
		last = last.next
	}
	return first
}

// sortKeys is keys in the order ReserveAll takes them, without duplicates.
func (*RepoLocks) sortKeys(keys []string) []string {
	keys = slices.Clone(keys)
	slices.Sort(keys)
	return slices.Compact(keys)
}

// keys lists the keys r reserves.
func (r *Reservation) keys() []string {
	var ks []string
	for ; r != nil; r = r.next {
		ks = append(ks, r.key)
	}
	return ks
}

// reserve is Reserve with l.mu held.
func (l *RepoLocks) reserve(key string) *Reservation {
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

// Wait waits for the reserved turn, like Lock, on every key reserved
// (ReserveAll). A second call fails. When ctx ends first, the keys already
// taken are unlocked and the places of the others given up.
func (r *Reservation) Wait(ctx context.Context) (unlock func(), waited bool, err error) {
	if r.next == nil {
		return r.wait(ctx)
	}
	var unlocks []func()
	unlockAll := func() {
		for _, u := range unlocks {
			u()
		}
	}
	for rv := r; rv != nil; rv = rv.next {
		u, w, err := rv.wait(ctx)
		waited = waited || w
		if err != nil {
			unlockAll()
			for rest := rv.next; rest != nil; rest = rest.next {
				rest.release()
			}
			return nil, waited, err
		}
		unlocks = append(unlocks, u)
	}
	return sync.OnceFunc(unlockAll), waited, nil
}

// wait is Wait for r's own key.
func (r *Reservation) wait(ctx context.Context) (unlock func(), waited bool, err error) {
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
	for ; r != nil; r = r.next {
		r.release()
	}
}

// release is Release for r's own key.
func (r *Reservation) release() {
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
