package schedules

import (
	"strings"
	"testing"
	"time"
)

func TestParseCron(t *testing.T) {
	from := time.Date(2026, 3, 1, 10, 30, 0, 0, time.UTC)
	for _, tc := range []struct {
		expr, tz string
		next     time.Time
	}{
		{"0 2 * * *", "", time.Date(2026, 3, 2, 2, 0, 0, 0, time.UTC)},
		{"@daily", "", time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)},
		{"@every 6h", "", from.Add(6 * time.Hour)},
		{"0 2 * * *", "Europe/Berlin", time.Date(2026, 3, 2, 1, 0, 0, 0, time.UTC)},
		{"*/15 * * * 1-5", "", time.Date(2026, 3, 2, 0, 0, 0, 0, time.UTC)}, // 1 March 2026 is a Sunday
	} {
		s, err := ParseCron(tc.expr, tc.tz)
		if err != nil {
			t.Fatalf("%q: %v", tc.expr, err)
		}
		if got := s.Next(from).UTC(); !got.Equal(tc.next) {
			t.Errorf("%q in %q: next %s, want %s", tc.expr, tc.tz, got, tc.next)
		}
	}
}

func TestParseCronErrors(t *testing.T) {
	for expr, want := range map[string]string{
		"":                 "empty",
		"61 * * * *":       "61",
		"* * * *":          "expected exactly 5 fields",
		"0 0 0 * * *":      "expected exactly 5 fields",
		"@sometimes":       "unrecognized descriptor",
		"TZ=UTC 0 * * * *": "time zone",
	} {
		_, err := ParseCron(expr, "")
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("%q: error %v, want one mentioning %q", expr, err, want)
		}
	}
	if _, err := ParseCron("@daily", "Mars/Olympus"); err == nil {
		t.Error("unknown time zone accepted")
	}
}

func TestNextRuns(t *testing.T) {
	s, _ := ParseCron("0 */6 * * *", "")
	runs := NextRuns(s, time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC), 5)
	if len(runs) != 5 || runs[0].Hour() != 6 || runs[4].Hour() != 6 || runs[4].Day() != 2 {
		t.Fatalf("runs %v", runs)
	}
}
