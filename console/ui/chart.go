package ui

import (
	"fmt"
	"html/template"
	"strings"
	"time"
)

// chartPoint is one value at one time.
type chartPoint struct {
	At    time.Time
	Value float64
}

// svgChart draws a small line chart on the server: no script, no library,
// and nothing from the data but numbers reaches the markup.
func svgChart(points []chartPoint, unit func(float64) string, label string) template.HTML {
	if len(points) < 2 {
		return template.HTML(`<p class="sub">Not enough data for a chart yet.</p>`)
	}
	const w, h, pad = 600.0, 160.0, 30.0
	t0, t1 := points[0].At, points[len(points)-1].At
	lo, hi := points[0].Value, points[0].Value
	for _, p := range points {
		lo, hi = min(lo, p.Value), max(hi, p.Value)
	}
	if hi == lo {
		hi = lo + 1
	}
	span := t1.Sub(t0).Seconds()
	if span <= 0 {
		span = 1
	}
	var pts strings.Builder
	for _, p := range points {
		x := pad + (w-2*pad)*p.At.Sub(t0).Seconds()/span
		y := h - pad - (h-2*pad)*(p.Value-lo)/(hi-lo)
		fmt.Fprintf(&pts, "%.1f,%.1f ", x, y)
	}
	svg := fmt.Sprintf(`<svg class="chart" viewBox="0 0 %g %g" role="img" aria-label="%s">`+
		`<polyline fill="none" stroke="#2451b3" stroke-width="2" points="%s"/>`+
		`<text x="%g" y="14" font-size="11">%s</text><text x="%g" y="%g" font-size="11">%s</text>`+
		`<text x="%g" y="%g" font-size="11">%s</text><text x="%g" y="%g" font-size="11" text-anchor="end">%s</text></svg>`,
		w, h, template.HTMLEscapeString(label), strings.TrimSpace(pts.String()),
		pad, template.HTMLEscapeString(unit(hi)), pad, h-pad+12, template.HTMLEscapeString(unit(lo)),
		pad, h-4, t0.UTC().Format("2006-01-02"), w-pad, h-4, t1.UTC().Format("2006-01-02 15:04"))
	return template.HTML(svg) //nolint:gosec // built from numbers and escaped labels only
}
