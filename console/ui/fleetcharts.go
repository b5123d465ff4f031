package ui

import (
	"fmt"
	"html/template"
	"sort"
	"strings"
	"time"
)

// fleetChartDays is how far back the dashboard's fleet charts reach.
const fleetChartDays = 30

// fleetCharts are the dashboard's charts of the whole fleet.
type fleetCharts struct {
	Backups, DataAdded, Size template.HTML
	// Since is the first day with counts (they start when the console
	// first counted: no history is rebuilt from old jobs).
	Since string
}

// fleetCharts draws backups per day (succeeded and failed), data added
// per day (console/daystats) and the total repository size (the sum of
// every repository's size history, each carried forward to each day).
func (s *Server) fleetCharts(now time.Time) fleetCharts {
	var out fleetCharts
	from := now.UTC().AddDate(0, 0, -fleetChartDays+1)
	days, err := s.store.DayStatsSince(from.Format("2006-01-02"))
	if err == nil && len(days) > 0 {
		out.Since = days[0].Day
		var bars []dayBar
		var added []chartPoint
		for _, d := range days {
			t, _ := time.Parse("2006-01-02", d.Day)
			bars = append(bars, dayBar{Day: t, OK: float64(d.BackupsOK), Failed: float64(d.BackupsFailed)})
			added = append(added, chartPoint{t, float64(d.DataAdded)})
		}
		out.Backups = svgBars(bars, "backups per day: succeeded and failed", func(v float64) string { return fmt.Sprintf("%.0f", v) })
		addedBars := make([]dayBar, len(added))
		for i, p := range added {
			addedBars[i] = dayBar{Day: p.At, OK: p.Value}
		}
		out.DataAdded = svgBars(addedBars, "data added per day", func(v float64) string { return humanBytes(uint64(v)) })
	}
	if repos, err := s.store.ListRepos(); err == nil {
		// Per day, each repository's last known size, carried forward.
		type pt struct {
			at    time.Time
			bytes uint64
		}
		perDay := map[string]uint64{}
		var dayKeys []string
		for d := from; !d.After(now.UTC()); d = d.AddDate(0, 0, 1) {
			dayKeys = append(dayKeys, d.Format("2006-01-02"))
		}
		seen := false
		for _, r := range repos {
			if r.Health == nil {
				continue
			}
			var hist []pt
			for _, p := range r.Health.SizeHistory {
				hist = append(hist, pt{p.At, p.Bytes})
			}
			sort.Slice(hist, func(i, j int) bool { return hist[i].at.Before(hist[j].at) })
			i, last := 0, uint64(0)
			for _, k := range dayKeys {
				end, _ := time.Parse("2006-01-02", k)
				end = end.AddDate(0, 0, 1)
				for i < len(hist) && hist[i].at.Before(end) {
					last = hist[i].bytes
					i++
				}
				perDay[k] += last
				seen = seen || last > 0
			}
		}
		if seen {
			var pts []chartPoint
			for _, k := range dayKeys {
				if perDay[k] > 0 {
					t, _ := time.Parse("2006-01-02", k)
					pts = append(pts, chartPoint{t, float64(perDay[k])})
				}
			}
			out.Size = svgChart(pts, func(v float64) string { return humanBytes(uint64(v)) }, "total repository size")
		}
	}
	return out
}

// dayBar is one day's bar: OK stacked under Failed.
type dayBar struct {
	Day        time.Time
	OK, Failed float64
}

// svgBars draws one bar per day, drawn on the server like svgChart: the
// succeeded part in blue, the failed part in red on top.
func svgBars(bars []dayBar, label string, unit func(float64) string) template.HTML {
	if len(bars) == 0 {
		return template.HTML(`<p class="sub">No backups counted yet.</p>`)
	}
	const w, h, pad = 600.0, 160.0, 30.0
	hi := 0.0
	for _, b := range bars {
		hi = max(hi, b.OK+b.Failed)
	}
	if hi == 0 {
		hi = 1
	}
	t0 := bars[0].Day
	span := max(1, int(bars[len(bars)-1].Day.Sub(t0).Hours()/24)+1)
	bw := (w - 2*pad) / float64(span)
	var rects strings.Builder
	for _, b := range bars {
		i := float64(int(b.Day.Sub(t0).Hours() / 24))
		x := pad + i*bw
		okH := (h - 2*pad) * b.OK / hi
		failH := (h - 2*pad) * b.Failed / hi
		title := template.HTMLEscapeString(fmt.Sprintf("%s: %s", b.Day.Format("2006-01-02"), unit(b.OK)))
		if b.Failed > 0 {
			title += template.HTMLEscapeString(fmt.Sprintf(", %s failed", unit(b.Failed)))
		}
		fmt.Fprintf(&rects, `<g><title>%s</title><rect class="bar-ok" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#2451b3"/>`, title, x+1, h-pad-okH, max(bw-2, 1), okH)
		if b.Failed > 0 {
			fmt.Fprintf(&rects, `<rect class="bar-failed" x="%.1f" y="%.1f" width="%.1f" height="%.1f" fill="#b3261e"/>`, x+1, h-pad-okH-failH, max(bw-2, 1), failH)
		}
		rects.WriteString(`</g>`)
	}
	svg := fmt.Sprintf(`<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s">%s`+
		`<text x="%g" y="14" font-size="11">%s</text><text x="%g" y="%g" font-size="11">%s</text><text x="%g" y="%g" font-size="11" text-anchor="end">%s</text></svg>`,
		w, h, template.HTMLEscapeString(label), rects.String(),
		pad, template.HTMLEscapeString(unit(hi)), pad, h-4, t0.Format("2006-01-02"), w-pad, h-4, bars[len(bars)-1].Day.Format("2006-01-02"))
	return template.HTML(svg) //nolint:gosec // built from numbers and escaped labels only
}
