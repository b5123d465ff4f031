package auth

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/storage"
)

// clock is a settable time for Auth.now.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.t }
func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func newAuthWithUser(t *testing.T) (*Auth, *storage.Store, *clock) {
	t.Helper()
	st := teststore.Open(t)
	a := New(Options{Store: st})
	clk := &clock{t: time.Now()}
	a.now = clk.now
	hash, _ := HashPassword("right-password")
	if err := st.CreateUser(storage.User{Name: "ops", PasswordHash: hash, Role: RoleOperator}); err != nil {
		t.Fatal(err)
	}
	return a, st, clk
}

func loginFrom(addr string) *http.Request {
	r := httptest.NewRequest("POST", "/api/v1/login", nil)
	r.RemoteAddr = addr
	return r
}

func TestLoginLockOut(t *testing.T) {
	a, st, clk := newAuthWithUser(t)
	r := loginFrom("192.0.2.1:4000")
	for range lockAfter {
		if _, err := a.Login(r, "ops", "wrong"); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if _, err := a.Login(r, "ops", "right-password"); err != ErrLocked {
		t.Fatalf("right password during lock-out: %v, want ErrLocked", err)
	}
	entries, _, _ := st.ListAudit(storage.AuditQuery{Actor: "ops"})
	if len(entries) != lockAfter+1 {
		t.Errorf("%d audit entries for the attempts, want %d", len(entries), lockAfter+1)
	}
	clk.add(lockBase + time.Second)
	if _, err := a.Login(r, "ops", "right-password"); err != nil {
		t.Fatalf("login after the lock-out: %v", err)
	}
}

// A guesser at one address cannot lock the user out at another; a guesser
// is its address whatever port it uses, and its /64 for IPv6.
func TestLockOutIsPerAddress(t *testing.T) {
	a, _, _ := newAuthWithUser(t)
	attacker := loginFrom("198.51.100.7:5555")
	for range lockAfter {
		_, _ = a.Login(attacker, "ops", "guess")
	}
	if _, err := a.Login(attacker, "ops", "right-password"); err != ErrLocked {
		t.Fatalf("the guessing address: %v, want ErrLocked", err)
	}
	if _, err := a.Login(loginFrom("198.51.100.7:6000"), "ops", "right-password"); err != ErrLocked {
		t.Fatalf("the guessing address from another port: %v, want ErrLocked", err)
	}
	if _, err := a.Login(loginFrom("192.0.2.10:4000"), "ops", "right-password"); err != nil {
		t.Fatalf("the user at another address is locked out too: %v", err)
	}
	// An IPv6 guesser is one /64, whatever address in it it takes.
	for i := range lockAfter {
		_, _ = a.Login(loginFrom("[2001:db8:1:2::"+string(rune('a'+i))+"]:443"), "ops", "guess")
	}
	if _, err := a.Login(loginFrom("[2001:db8:1:2::ff]:443"), "ops", "right-password"); err != ErrLocked {
		t.Fatalf("another address of the guessing /64: %v, want ErrLocked", err)
	}
}

// Each lock of the same (user, address) lasts twice the one before, up to
// lockMax; a success forgets the back-off.
func TestLockOutBacksOff(t *testing.T) {
	a, _, clk := newAuthWithUser(t)
	r := loginFrom("198.51.100.7:5555")
	lockOnce := func(d time.Duration) {
		t.Helper()
		for j := range lockAfter {
			if _, err := a.Login(r, "ops", "guess"); err == ErrLocked {
				t.Fatalf("locked after %d failures, want %d", j, lockAfter)
			}
		}
		clk.add(d - time.Second)
		if _, err := a.Login(r, "ops", "right-password"); err != ErrLocked {
			t.Fatalf("%v a second before the %v lock ends, want ErrLocked", err, d)
		}
		clk.add(2 * time.Second)
	}
	for _, d := range []time.Duration{15 * time.Minute, 30 * time.Minute, time.Hour, 2 * time.Hour, 4 * time.Hour, 6 * time.Hour, 6 * time.Hour} {
		lockOnce(d)
	}
	if _, err := a.Login(r, "ops", "right-password"); err != nil {
		t.Fatalf("after the last lock: %v", err)
	}
	lockOnce(lockBase)
	if _, err := a.Login(r, "ops", "right-password"); err != nil {
		t.Fatalf("a success did not forget the back-off: %v", err)
	}
}

// A 1 MiB user name is refused without becoming a lock-out key, and its
// audit entry stays small.
func TestHugeUserNameRefusedAndBounded(t *testing.T) {
	a, st, _ := newAuthWithUser(t)
	huge := strings.Repeat("a", 1<<20)
	for range lockAfter + 1 {
		if _, err := a.Login(loginFrom("192.0.2.1:1"), huge, "x"); err == nil || errors.Is(err, ErrLocked) {
			t.Fatalf("huge name: %v, want a plain refusal", err)
		}
	}
	a.guard.mu.Lock()
	n := len(a.guard.m)
	a.guard.mu.Unlock()
	if n != 0 {
		t.Errorf("%d lock-out entries for a name that cannot exist", n)
	}
	entries, _, _ := st.ListAudit(storage.AuditQuery{})
	if len(entries) != lockAfter+1 {
		t.Fatalf("%d audit entries, want %d", len(entries), lockAfter+1)
	}
	for _, e := range entries {
		if len(e.Actor) > storage.MaxAuditField || e.Action != "login failed" {
			t.Errorf("audit entry: actor %d bytes, action %q", len(e.Actor), e.Action)
		}
	}
}

// The guard's memory is bounded however many pairs fail.
func TestLockOutGuardBounded(t *testing.T) {
	var g loginGuard
	now := time.Now()
	for i := range maxGuardEntries + 500 {
		k := guardKey{user: "u", addr: "a" + strings.Repeat("x", i%7) + string(rune(i))}
		g.fail(k, now)
	}
	if len(g.m) > maxGuardEntries {
		t.Fatalf("%d entries, at most %d", len(g.m), maxGuardEntries)
	}
}

func TestTokenRoleAndExpiry(t *testing.T) {
	now := time.Now()
	admin := storage.User{Name: "a", Role: RoleAdmin}
	viewer := storage.User{Name: "v", Role: RoleViewer}
	for _, tc := range []struct {
		tok  storage.APIToken
		user storage.User
		want string
	}{
		{storage.APIToken{}, admin, RoleAdmin},
		{storage.APIToken{Role: RoleOperator}, admin, RoleOperator},
		{storage.APIToken{Role: RoleAdmin}, viewer, RoleViewer},
		{storage.APIToken{Role: "root"}, viewer, RoleViewer},
	} {
		if got := TokenRole(tc.tok, tc.user); got != tc.want {
			t.Errorf("token role %q of a %s: %s, want %s", tc.tok.Role, tc.user.Role, got, tc.want)
		}
	}
	if TokenExpired(storage.APIToken{}, now) {
		t.Error("a token without expiry expired")
	}
	if !TokenExpired(storage.APIToken{ExpiresAt: now}, now) || TokenExpired(storage.APIToken{ExpiresAt: now.Add(time.Second)}, now) {
		t.Error("expiry at the boundary")
	}
}

// A token's use is recorded, at most about once a minute; an expired
// token is refused and its use not recorded.
func TestTokenLastUse(t *testing.T) {
	a, st, clk := newAuthWithUser(t)
	p := Principal{User: "ops", Role: RoleOperator}
	made, tok, err := a.CreateToken(p, TokenRequest{Name: "ci", ExpiresIn: "1h"})
	if err != nil {
		t.Fatal(err)
	}
	use := func() error {
		r := httptest.NewRequest("GET", "/api/v1/hosts", nil)
		r.Header.Set("Authorization", "Bearer "+tok)
		_, err := a.identify(r)
		return err
	}
	lastUse := func() time.Time {
		toks, _ := st.ListAPITokens()
		for _, x := range toks {
			if x.ID == made.ID {
				return x.LastUsedAt
			}
		}
		t.Fatal("token gone")
		return time.Time{}
	}
	if !lastUse().IsZero() {
		t.Fatal("a new token has a last use")
	}
	first := clk.now()
	if err := use(); err != nil {
		t.Fatal(err)
	}
	if got := lastUse(); !got.Equal(first.UTC()) {
		t.Fatalf("last use %v, want %v", got, first)
	}
	clk.add(20 * time.Second)
	if err := use(); err != nil || !lastUse().Equal(first.UTC()) {
		t.Fatalf("a use 20s later moved the last use (%v) or failed (%v)", lastUse(), err)
	}
	clk.add(time.Minute)
	if err := use(); err != nil || !lastUse().Equal(clk.now().UTC()) {
		t.Fatalf("a use a minute later: last use %v, %v", lastUse(), err)
	}
	clk.add(time.Hour)
	if err := use(); err == nil {
		t.Fatal("an expired token authenticated")
	}
}
