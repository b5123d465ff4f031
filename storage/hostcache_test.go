package storage

import (
	"slices"
	"testing"
)

// The host cache answers what the store holds now: a changed record is
// decoded again, a new one appears, a deleted one is gone, and an unchanged
// one is reused (not decoded again).
func TestHostCacheFollowsTheStore(t *testing.T) {
	s, _ := openTest(t)
	for _, id := range []string{"host-b", "host-a", "host-c"} {
		if err := s.CreateHost(sampleHost(id)); err != nil {
			t.Fatal(err)
		}
	}
	c := s.NewHostCache()
	scan := func() ([]string, map[string]*LastBackup) {
		t.Helper()
		hosts, err := c.Hosts()
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		last := map[string]*LastBackup{}
		for _, h := range hosts {
			names = append(names, h.ID+"="+h.Name)
			last[h.ID] = h.LastBackup
		}
		return names, last
	}
	names, first := scan()
	if !slices.Equal(names, []string{"host-a=web host-a", "host-b=web host-b", "host-c=web host-c"}) {
		t.Fatalf("first scan: %v", names)
	}
	if _, err := s.UpdateHost("host-b", func(h *Host) error { h.Name = "renamed"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteHost("host-c"); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateHost(sampleHost("host-d")); err != nil {
		t.Fatal(err)
	}
	names, second := scan()
	if !slices.Equal(names, []string{"host-a=web host-a", "host-b=renamed", "host-d=web host-d"}) {
		t.Fatalf("after changes: %v", names)
	}
	if len(c.hosts) != 3 {
		t.Errorf("cache holds %d hosts, want 3 (the deleted one dropped)", len(c.hosts))
	}
	// Decoding makes new pointers: host-a, not written, keeps its record;
	// host-b, written, was decoded again.
	if first["host-a"] != second["host-a"] {
		t.Error("an unchanged host was decoded again")
	}
	if first["host-b"] == second["host-b"] {
		t.Error("a changed host was not decoded again")
	}
}
