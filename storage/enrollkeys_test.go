package storage

import (
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"
)

// An enrolment key makes hosts until it is used up, expires or is
// deleted; a refusal by the caller's maker counts nothing, and the hosts
// made stay when the key goes.
func TestEnrollKeyLifecycle(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	k := EnrollKey{ID: "ekey-1", Name: "web", Labels: map[string]string{"role": "web"}, MaxUses: 2, CreatedBy: "admin", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.CreateEnrollKey(hash("rmk_one"), k); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateEnrollKey(hash("rmk_one"), k); !errors.Is(err, ErrExists) {
		t.Errorf("the same key twice: %v", err)
	}
	if _, err := s.GetEnrollKey(hash("rmk_other"), now); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown key: %v", err)
	}
	mk := func(id string) func(EnrollKey) (Host, error) {
		return func(k EnrollKey) (Host, error) { return Host{ID: id, Name: id, Labels: k.Labels}, nil }
	}
	refused := errors.New("refused")
	if _, _, err := s.UseEnrollKey(hash("rmk_one"), now, func(EnrollKey) (Host, error) { return Host{}, refused }); !errors.Is(err, refused) {
		t.Errorf("maker's refusal: %v", err)
	}
	for _, id := range []string{"host-a", "host-b"} {
		got, h, err := s.UseEnrollKey(hash("rmk_one"), now, mk(id))
		if err != nil || h.ID != id || h.Labels["role"] != "web" {
			t.Fatalf("use for %s: %+v %+v %v", id, got, h, err)
		}
		if stored, err := s.GetHost(id); err != nil || stored.Labels["role"] != "web" {
			t.Errorf("host %s stored: %+v %v", id, stored, err)
		}
	}
	got, _, err := s.UseEnrollKey(hash("rmk_one"), now, mk("host-c"))
	if !errors.Is(err, ErrEnrollKeyUsedUp) || got.Uses != 2 {
		t.Errorf("third use of a 2-use key: %+v %v", got, err)
	}
	if _, err := s.GetHost("host-c"); !errors.Is(err, ErrNotFound) {
		t.Errorf("a used-up key made a host: %v", err)
	}
	if _, err := s.GetEnrollKey(hash("rmk_one"), now); !errors.Is(err, ErrEnrollKeyUsedUp) {
		t.Errorf("get of a used-up key: %v", err)
	}

	// Expired (a zero expiry too), then deleted.
	for i, exp := range []time.Time{now, {}} {
		key := fmt.Sprintf("rmk_exp%d", i)
		if err := s.CreateEnrollKey(hash(key), EnrollKey{ID: fmt.Sprintf("ekey-exp%d", i), ExpiresAt: exp}); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.UseEnrollKey(hash(key), now, mk("host-x")); !errors.Is(err, ErrEnrollKeyExpired) {
			t.Errorf("key expiring at %v: %v", exp, err)
		}
	}
	keys, err := s.ListEnrollKeys()
	if err != nil || len(keys) != 3 {
		t.Fatalf("list: %d %v", len(keys), err)
	}
	if err := s.DeleteEnrollKey("ekey-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteEnrollKey("ekey-1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if _, _, err := s.UseEnrollKey(hash("rmk_one"), now, mk("host-d")); !errors.Is(err, ErrNotFound) {
		t.Errorf("use of a deleted key: %v", err)
	}
	if _, err := s.GetHost("host-a"); err != nil {
		t.Errorf("a host made by a deleted key: %v", err)
	}
}

// However many agents race for a key, it makes MaxUses hosts.
func TestEnrollKeyMaxUsesUnderRace(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	const maxUses, agents = 7, 30
	if err := s.CreateEnrollKey(hash("rmk_race"), EnrollKey{ID: "ekey-race", MaxUses: maxUses, ExpiresAt: now.Add(time.Hour)}); err != nil {
		t.Fatal(err)
	}
	var (
		wg       sync.WaitGroup
		mu       sync.Mutex
		ok, full int
	)
	for i := range agents {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, _, err := s.UseEnrollKey(hash("rmk_race"), now, func(EnrollKey) (Host, error) {
				return Host{ID: fmt.Sprintf("host-%02d", i)}, nil
			})
			mu.Lock()
			defer mu.Unlock()
			switch {
			case err == nil:
				ok++
			case errors.Is(err, ErrEnrollKeyUsedUp):
				full++
			default:
				t.Errorf("agent %d: %v", i, err)
			}
		}()
	}
	wg.Wait()
	if ok != maxUses || full != agents-maxUses {
		t.Errorf("%d made, %d refused; want %d and %d", ok, full, maxUses, agents-maxUses)
	}
	hosts, _ := s.ListHosts("", 0)
	keys, _ := s.ListEnrollKeys()
	if len(hosts) != maxUses || len(keys) != 1 || keys[0].Uses != maxUses {
		t.Errorf("%d hosts stored, key %+v", len(hosts), keys)
	}
}
