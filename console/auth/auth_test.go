package auth

import (
	"net/http/httptest"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/storage"
)

func TestLoginLockOut(t *testing.T) {
	st := teststore.Open(t)
	c := New(Options{Store: st})
	hash, _ := HashPassword("right-password")
	if err := st.CreateUser(storage.User{Name: "ops", PasswordHash: hash, Role: RoleOperator}); err != nil {
		t.Fatal(err)
	}
	r := httptest.NewRequest("POST", "/api/v1/login", nil)
	for range lockAfter {
		if _, err := c.Login(r, "ops", "wrong"); err == nil {
			t.Fatal("wrong password accepted")
		}
	}
	if _, err := c.Login(r, "ops", "right-password"); err != ErrLocked {
		t.Fatalf("right password during lock-out: %v, want ErrLocked", err)
	}
	entries, _, _ := st.ListAudit(storage.AuditQuery{Actor: "ops"})
	if len(entries) != lockAfter+1 {
		t.Errorf("%d audit entries for the attempts, want %d", len(entries), lockAfter+1)
	}
	c.guard.mu.Lock()
	c.guard.m["ops"].lockedUntil = time.Now().Add(-time.Second)
	c.guard.m["ops"].first = time.Now().Add(-lockWindow - time.Second)
	c.guard.mu.Unlock()
	if _, err := c.Login(r, "ops", "right-password"); err != nil {
		t.Fatalf("login after the lock-out: %v", err)
	}
}
