package storage

import (
	"testing"
	"time"
)

func TestAuditPagesNewestFirst(t *testing.T) {
	s, _ := openTest(t)
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range 25 {
		actor := "alice"
		if i%5 == 0 {
			actor = "bob"
		}
		if err := s.AppendAudit(AuditEntry{At: base.Add(time.Duration(i) * time.Minute), Actor: actor, Action: "POST /x"}); err != nil {
			t.Fatal(err)
		}
	}
	var all []AuditEntry
	cursor := ""
	for {
		page, next, err := s.ListAudit(AuditQuery{Limit: 10, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 25 {
		t.Fatalf("%d entries over pages, want 25", len(all))
	}
	for i := 1; i < len(all); i++ {
		if !all[i].At.Before(all[i-1].At) {
			t.Fatalf("not newest first at %d", i)
		}
	}
	bob, _, err := s.ListAudit(AuditQuery{Actor: "bob"})
	if err != nil || len(bob) != 5 {
		t.Fatalf("bob's entries: %d %v", len(bob), err)
	}
	if _, _, err := s.ListAudit(AuditQuery{Cursor: "!!"}); err == nil {
		t.Fatal("bad cursor accepted")
	}
}
