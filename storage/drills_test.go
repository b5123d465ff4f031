package storage

import (
	"fmt"
	"testing"
	"time"
)

// A host's drill history keeps the newest drills in time order, takes a
// redelivered drill once, and goes with the host.
func TestDrillHistory(t *testing.T) {
	s, _ := openTest(t)
	if err := s.CreateHost(Host{ID: "h1", Name: "h1"}); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i := range MaxDrillHistory + 5 {
		added, err := s.AddDrill("h1", DrillPoint{JobID: fmt.Sprintf("job-%03d", i), At: base.Add(time.Duration(i) * time.Hour), Status: JobSucceeded})
		if err != nil || !added {
			t.Fatalf("add %d: %v %v", i, added, err)
		}
	}
	// Out of order (an agent that was offline): in its place by time; the
	// oldest goes.
	if added, err := s.AddDrill("h1", DrillPoint{JobID: "job-late", At: base.Add(50*time.Hour + time.Minute)}); err != nil || !added {
		t.Fatalf("late: %v %v", added, err)
	}
	if added, err := s.AddDrill("h1", DrillPoint{JobID: "job-050", At: base.Add(50 * time.Hour)}); err != nil || added {
		t.Fatalf("redelivered: added=%v %v", added, err)
	}
	pts, err := s.DrillHistory("h1")
	if err != nil {
		t.Fatal(err)
	}
	if len(pts) != MaxDrillHistory {
		t.Fatalf("%d points", len(pts))
	}
	for i := 1; i < len(pts); i++ {
		if pts[i].At.Before(pts[i-1].At) {
			t.Fatalf("not in time order at %d", i)
		}
	}
	if pts[len(pts)-1].JobID != fmt.Sprintf("job-%03d", MaxDrillHistory+4) || pts[0].JobID != "job-006" {
		t.Errorf("kept %s … %s", pts[0].JobID, pts[len(pts)-1].JobID)
	}
	if err := s.DeleteHost("h1"); err != nil {
		t.Fatal(err)
	}
	if pts, err := s.DrillHistory("h1"); err != nil || len(pts) != 0 {
		t.Errorf("after delete: %d points, %v", len(pts), err)
	}
}
