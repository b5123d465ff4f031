package runner

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

func TestRepoLocks(t *testing.T) {
	var l RepoLocks
	ctx := context.Background()

	unlock1, waited, err := l.Lock(ctx, "a")
	if err != nil || waited {
		t.Fatalf("first Lock: waited %v, err %v", waited, err)
	}
	// Another key is independent.
	unlockB, waited, err := l.Lock(ctx, "b")
	if err != nil || waited {
		t.Fatalf("Lock b: waited %v, err %v", waited, err)
	}
	unlockB()

	got := make(chan bool)
	go func() {
		unlock2, waited, err := l.Lock(ctx, "a")
		if err != nil {
			t.Error(err)
		}
		got <- waited
		unlock2()
	}()
	select {
	case <-got:
		t.Fatal("second locker did not wait")
	case <-time.After(50 * time.Millisecond):
	}
	unlock1()
	unlock1() // a second call is harmless
	if w := <-got; !w {
		t.Fatal("second locker reports waited=false")
	}
	waitFor(t, func() bool { return l.size() == 0 })
}

func TestRepoLocksCancelledWait(t *testing.T) {
	var l RepoLocks
	unlock, _, _ := l.Lock(context.Background(), "k")

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() {
		u, waited, err := l.Lock(ctx, "k")
		if u != nil || !waited {
			t.Errorf("cancelled wait: unlock %v, waited %v", u != nil, waited)
		}
		done <- err
	}()
	time.Sleep(20 * time.Millisecond)
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled wait returned %v", err)
	}
	// The cancelled waiter is gone: the key is free after one unlock.
	unlock()
	if n := l.size(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
	if _, _, err := l.Lock(ctx, "k"); !errors.Is(err, context.Canceled) {
		t.Fatalf("Lock with a done ctx: %v", err)
	}
	if n := l.size(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// TestRepoLocksFIFO: waiters get the lock in arrival order, and mutual
// exclusion holds under contention (run with -race).
func TestRepoLocksFIFO(t *testing.T) {
	var l RepoLocks
	unlock, _, _ := l.Lock(context.Background(), "k")
	var (
		mu    sync.Mutex
		order []int
		wg    sync.WaitGroup
	)
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			u, _, err := l.Lock(context.Background(), "k")
			if err != nil {
				t.Error(err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			u()
		}()
		// Let goroutine i queue before i+1.
		waitFor(t, func() bool {
			l.mu.Lock()
			defer l.mu.Unlock()
			return len(l.m["k"].waiters) == i+1
		})
	}
	unlock()
	wg.Wait()
	for i, v := range order {
		if v != i {
			t.Fatalf("order %v", order)
		}
	}
	if l.size() != 0 {
		t.Fatal("keys left")
	}

	// Mutual exclusion, with waits cancelled at random.
	inside := 0
	var wg2 sync.WaitGroup
	for i := 0; i < 50; i++ {
		wg2.Add(1)
		go func() {
			defer wg2.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(i%7)*time.Millisecond)
			defer cancel()
			u, _, err := l.Lock(ctx, "m")
			if err != nil {
				return
			}
			mu.Lock()
			inside++
			if inside != 1 {
				t.Error("two holders")
			}
			mu.Unlock()
			time.Sleep(time.Millisecond)
			mu.Lock()
			inside--
			mu.Unlock()
			u()
		}()
	}
	wg2.Wait()
	if l.size() != 0 {
		t.Fatal("keys left after contention")
	}
}

// waitFor polls cond until it holds or the test's time is nearly up.
func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not reached")
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// Reservations taken in arrival order are served in that order, whatever
// order their goroutines reach Wait in; an unused one passes its turn on.
func TestReservationsKeepArrivalOrder(t *testing.T) {
	var l RepoLocks
	ctx := context.Background()
	first := l.Reserve("r")
	rs := []*Reservation{l.Reserve("r"), l.Reserve("r"), l.Reserve("r"), l.Reserve("r")}
	skipped := rs[2] // gives up its turn without waiting
	var mu sync.Mutex
	var order []int
	var wg sync.WaitGroup
	for i := len(rs) - 1; i >= 0; i-- { // reach Wait in reverse order
		if rs[i] == skipped {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			unlock, waited, err := rs[i].Wait(ctx)
			if err != nil || !waited {
				t.Errorf("reservation %d: waited=%v err=%v", i, waited, err)
				return
			}
			mu.Lock()
			order = append(order, i)
			mu.Unlock()
			unlock()
		}()
		time.Sleep(10 * time.Millisecond)
	}
	skipped.Release()
	unlock, waited, err := first.Wait(ctx)
	if err != nil || waited {
		t.Fatalf("first reservation: waited=%v err=%v, want the lock at once", waited, err)
	}
	unlock()
	wg.Wait()
	if fmt.Sprint(order) != "[0 1 3]" {
		t.Fatalf("served in order %v, want [0 1 3]", order)
	}
	if _, _, err := first.Wait(ctx); err == nil {
		t.Fatal("a reservation waited twice")
	}
	first.Release() // after Wait: nothing
	if n := l.size(); n != 0 {
		t.Fatalf("%d keys left", n)
	}
}

// ReserveAll takes several keys at one moment: copies in opposite
// directions between two repositories, each behind a job holding one of
// them, do not deadlock, and a cancelled wait leaves nothing held.
func TestReserveAll(t *testing.T) {
	var l RepoLocks
	ctx := context.Background()
	holdA, _, _ := l.Lock(ctx, "a")
	holdB, _, _ := l.Lock(ctx, "b")
	ab := l.ReserveAll("a", "b", "a")
	ba := l.ReserveAll("b", "a")
	if got := ab.keys(); fmt.Sprint(got) != "[a b]" {
		t.Fatalf("keys %v", got)
	}
	done := make(chan string, 2)
	for name, rv := range map[string]*Reservation{"ab": ab, "ba": ba} {
		go func() {
			unlock, waited, err := rv.Wait(ctx)
			if err != nil || !waited {
				t.Errorf("%s: waited=%v err=%v", name, waited, err)
				done <- name
				return
			}
			time.Sleep(5 * time.Millisecond)
			unlock()
			unlock() // harmless
			done <- name
		}()
	}
	holdB() // "ab" cannot take "b" before "a": nothing moves yet
	holdA()
	for range 2 {
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			t.Fatal("deadlock")
		}
	}
	waitFor(t, func() bool { return l.size() == 0 })

	// A wait ended by its context unlocks what it took.
	holdB, _, _ = l.Lock(ctx, "b")
	cctx, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if u, waited, err := l.ReserveAll("a", "b").Wait(cctx); u != nil || !waited || err == nil {
		t.Fatalf("cancelled wait: unlock %v, waited %v, err %v", u != nil, waited, err)
	}
	holdB()
	waitFor(t, func() bool { return l.size() == 0 })
	// A released multi-key reservation gives up every place.
	l.ReserveAll("a", "b").Release()
	if n := l.size(); n != 0 {
		t.Fatalf("%d keys left after Release", n)
	}
	if l.ReserveAll() != nil {
		t.Fatal("ReserveAll of no key")
	}
}
