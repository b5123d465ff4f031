package ui

import (
	"strings"
	"testing"
	"time"
)

func TestDescribeCron(t *testing.T) {
	for expr, want := range map[string]string{
		"0 2 * * *":    "every day at 02:00 (UTC)",
		"30 4 * * 1":   "every Monday at 04:30 (UTC)",
		"*/15 * * * *": "every 15 minutes",
		"@every 6h":    "every 6h",
		"0 3 1 * *":    "on day 1 of every month at 03:00 (UTC)",
		"5 * * * *":    "every hour at minute 5",
	} {
		if got := describeCron(expr, ""); got != want {
			t.Errorf("%q: %q, want %q", expr, got, want)
		}
	}
}

func TestSVGChart(t *testing.T) {
	now := time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)
	out := string(svgChart([]chartPoint{{now, 1 << 20}, {now.Add(time.Hour), 3 << 20}, {now.Add(2 * time.Hour), 2 << 20}},
		func(v float64) string { return humanBytes(uint64(v)) }, `size <of> "repo"`))
	if !strings.HasPrefix(out, "<svg") || !strings.Contains(out, "<polyline") || !strings.Contains(out, "3.0 MiB") || !strings.Contains(out, "1.0 MiB") {
		t.Fatalf("chart %s", out)
	}
	if strings.Contains(out, `<of>`) {
		t.Fatal("label not escaped")
	}
	if got := string(svgChart(nil, nil, "x")); strings.Contains(got, "<svg") {
		t.Fatal("a chart without data")
	}
}
