package schedules

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func TestLimitsAt(t *testing.T) {
	s := Schedule{Name: "n", Kind: "backup", Cron: "@hourly", Timezone: "Europe/Berlin", RepoID: "r", Paths: []string{"/home"},
		LimitUploadKiB: 100, // outside every window
		LimitWindows: []LimitWindow{
			{Days: []string{"mon", "tue", "wed", "thu", "fri"}, From: "08:00", To: "18:00", LimitUploadKiB: 5120},
			{Days: []string{"fri"}, From: "22:00", To: "06:00", LimitDownloadKiB: 7}, // overnight into Saturday
			{From: "12:00", To: "13:00", LimitUploadKiB: 1},                          // every day; shadowed on weekdays by the first
		}}
	if err := s.Validate(); err != nil {
		t.Fatal(err)
	}
	berlin, _ := time.LoadLocation("Europe/Berlin")
	tokyo, _ := time.LoadLocation("Asia/Tokyo")
	for _, tc := range []struct {
		at       time.Time
		up, down int
	}{
		{time.Date(2026, 12, 7, 8, 0, 0, 0, berlin), 5120, 0},    // Monday, window start inclusive
		{time.Date(2026, 12, 7, 7, 59, 59, 0, berlin), 100, 0},   // a second before
		{time.Date(2026, 12, 7, 17, 59, 0, 0, berlin), 5120, 0},  // last minute inside
		{time.Date(2026, 12, 7, 18, 0, 0, 0, berlin), 100, 0},    // end exclusive
		{time.Date(2026, 12, 7, 7, 30, 0, 0, time.UTC), 5120, 0}, // 08:30 in Berlin (UTC+1)
		{time.Date(2026, 12, 7, 16, 30, 0, 0, tokyo), 5120, 0},   // 08:30 in Berlin, given in Tokyo
		{time.Date(2026, 12, 7, 17, 30, 0, 0, time.UTC), 100, 0}, // 18:30 in Berlin though 17:30 UTC
		{time.Date(2026, 12, 12, 10, 0, 0, 0, berlin), 100, 0},   // Saturday
		{time.Date(2026, 12, 12, 12, 30, 0, 0, berlin), 1, 0},    // Saturday lunch: the every-day window
		{time.Date(2026, 12, 11, 23, 0, 0, 0, berlin), 0, 7},     // Friday night
		{time.Date(2026, 12, 12, 5, 59, 0, 0, berlin), 0, 7},     // Saturday morning, same window
		{time.Date(2026, 12, 12, 6, 0, 0, 0, berlin), 100, 0},    // its end
		{time.Date(2026, 12, 8, 5, 0, 0, 0, berlin), 100, 0},     // Tuesday morning: the overnight window starts on Fridays only
	} {
		if up, down := s.LimitsAt(tc.at); up != tc.up || down != tc.down {
			t.Errorf("%s: limits %d/%d, want %d/%d", tc.at.In(berlin).Format(time.RFC1123), up, down, tc.up, tc.down)
		}
	}
	raw, err := s.JobArgsAt(time.Date(2026, 12, 7, 9, 0, 0, 0, berlin))
	var args struct {
		Up int `json:"limit_upload_kib"`
	}
	if err != nil || json.Unmarshal(raw, &args) != nil || args.Up != 5120 {
		t.Errorf("JobArgsAt: %s, %v", raw, err)
	}
	// A DST change moves the window with the wall clock: 08:30 Berlin in
	// summer is 06:30 UTC.
	if up, _ := s.LimitsAt(time.Date(2026, 7, 6, 6, 30, 0, 0, time.UTC)); up != 5120 {
		t.Errorf("summer time: %d", up)
	}
}

func TestLimitWindowsValidate(t *testing.T) {
	ok := Schedule{Name: "n", Kind: "backup", Cron: "@daily", RepoID: "r", Paths: []string{"/home"},
		LimitWindows: []LimitWindow{{From: "00:00", To: "24:00", LimitUploadKiB: 1}}}
	if err := ok.Validate(); err != nil {
		t.Fatal(err)
	}
	for want, mut := range map[string]func(*Schedule){
		`day "monday" is not one of sun, mon`: func(s *Schedule) { s.LimitWindows[0].Days = []string{"monday"} },
		`day "mon" named twice`:               func(s *Schedule) { s.LimitWindows[0].Days = []string{"mon", "mon"} },
		`from: time "8:00" is not HH:MM`:      func(s *Schedule) { s.LimitWindows[0].From = "8:00" },
		`from: time "24:00" is not between`:   func(s *Schedule) { s.LimitWindows[0].From = "24:00" },
		`to: time "18:60" is not between`:     func(s *Schedule) { s.LimitWindows[0].To = "18:60" },
		`to: time "08:0a" is not HH:MM`:       func(s *Schedule) { s.LimitWindows[0].To = "08:0a" },
		"the window would be empty":           func(s *Schedule) { s.LimitWindows[0].From, s.LimitWindows[0].To = "08:00", "08:00" },
		"limit window 1: bandwidth limits":    func(s *Schedule) { s.LimitWindows[0].LimitDownloadKiB = -1 },
		"at most 10":                          func(s *Schedule) { s.LimitWindows = make([]LimitWindow, 11) },
		"backup and copy schedules only":      func(s *Schedule) { s.Kind = "check" },
	} {
		s := ok
		s.LimitWindows = append([]LimitWindow(nil), ok.LimitWindows...)
		mut(&s)
		if err := s.Validate(); err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%s: error %v", want, err)
		}
	}
}
