package runner

import (
	"context"
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
	l.mu.Lock()
	if l.m == nil {
		l.m = map[string]*keyLock{}
	}
	k, held := l.m[key]
	if !held {
		l.m[key] = &keyLock{}
		l.mu.Unlock()
		return l.unlocker(key), false, nil
	}
	ch := make(chan struct{})
	k.waiters = append(k.waiters, ch)
	l.mu.Unlock()

	select {
	case <-ch:
		return l.unlocker(key), true, nil
	case <-ctx.Done():
	}
	l.mu.Lock()
	for i, w := range k.waiters {
		if w == ch {
			k.waiters = append(k.waiters[:i], k.waiters[i+1:]...)
			l.mu.Unlock()
			return nil, true, ctx.Err()
		}
	}
	l.mu.Unlock()
	// The lock was handed over as ctx ended: pass it on.
	l.release(key)
	return nil, true, ctx.Err()
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
