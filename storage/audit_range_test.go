package storage

import (
	"testing"
	"time"
)

// The audit log filtered by time: Since and Until bound the entries (both
// inclusive), combine with the actor filter, and page with the cursor.
func TestAuditTimeRange(t *testing.T) {
	s, _ := openTest(t)
	base := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for i := range 48 { // one entry an hour over two days
		actor := "alice"
		if i%2 == 1 {
			actor = "bob"
		}
		if err := s.AppendAudit(AuditEntry{At: base.Add(time.Duration(i) * time.Hour), Actor: actor, Action: "POST /x"}); err != nil {
			t.Fatal(err)
		}
	}
	hours := func(es []AuditEntry) []int {
		var out []int
		for _, e := range es {
			out = append(out, int(e.At.Sub(base)/time.Hour))
		}
		return out
	}
	since, until := base.Add(10*time.Hour), base.Add(20*time.Hour)
	got, next, err := s.ListAudit(AuditQuery{Since: since, Until: until})
	if err != nil {
		t.Fatal(err)
	}
	if h := hours(got); len(h) != 11 || h[0] != 20 || h[10] != 10 || next != "" {
		t.Fatalf("10:00 to 20:00: hours %v (next %q), want 20 down to 10", h, next)
	}
	// Only a bound on one side.
	got, _, _ = s.ListAudit(AuditQuery{Until: base.Add(2 * time.Hour)})
	if h := hours(got); len(h) != 3 || h[0] != 2 {
		t.Errorf("until 02:00: %v", h)
	}
	got, _, _ = s.ListAudit(AuditQuery{Since: base.Add(45 * time.Hour)})
	if h := hours(got); len(h) != 3 || h[2] != 45 {
		t.Errorf("since 45:00: %v", h)
	}
	// With the actor, paged by four: bob's odd hours 11 … 19.
	var all []int
	cursor := ""
	for range 10 {
		page, next, err := s.ListAudit(AuditQuery{Actor: "bob", Since: since, Until: until, Limit: 4, Cursor: cursor})
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, hours(page)...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 5 || all[0] != 19 || all[4] != 11 {
		t.Errorf("bob from 10:00 to 20:00 in pages of 4: %v, want 19 17 15 13 11", all)
	}
	// A range with nothing in it.
	got, _, _ = s.ListAudit(AuditQuery{Since: base.Add(100 * time.Hour)})
	if len(got) != 0 {
		t.Errorf("a range after every entry: %d entries", len(got))
	}
}

// A channel's last delivery is kept per channel, is not kept for a channel
// that does not exist, and goes with its channel.
func TestChannelDeliveries(t *testing.T) {
	s, _ := openTest(t)
	if _, err := s.CreateChannel(Channel{ID: "chan-1", Name: "hook", Kind: "webhook", MinSeverity: "warning", CreatedAt: time.Now()}, []byte(`{}`)); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	if err := s.PutChannelDelivery("chan-1", ChannelDelivery{At: at, OK: false, Event: "test", Error: "connection refused"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutChannelDelivery("chan-gone", ChannelDelivery{At: at, OK: true}); err == nil {
		t.Error("a delivery of a channel that does not exist was recorded")
	}
	ds, err := s.ChannelDeliveries()
	if err != nil {
		t.Fatal(err)
	}
	if d, ok := ds["chan-1"]; len(ds) != 1 || !ok || d.OK || d.Error != "connection refused" || !d.At.Equal(at) || d.Event != "test" {
		t.Fatalf("deliveries %+v", ds)
	}
	if err := s.PutChannelDelivery("chan-1", ChannelDelivery{At: at.Add(time.Minute), OK: true, Event: "firing"}); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.ChannelDeliveries(); !ds["chan-1"].OK || ds["chan-1"].Error != "" {
		t.Errorf("the last delivery is not the latest: %+v", ds["chan-1"])
	}
	if err := s.DeleteChannel("chan-1"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteChannelDelivery("chan-1"); err != nil {
		t.Fatal(err)
	}
	if ds, _ := s.ChannelDeliveries(); len(ds) != 0 {
		t.Errorf("deliveries after the delete: %+v", ds)
	}
}
