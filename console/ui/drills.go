package ui

import (
	"encoding/json"
	"fmt"
	"html/template"
	"maps"
	"slices"
	"strings"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Restore drills on the pages: the host page's history, charts and "run a
// drill now" form, the job page's report of one drill, the dashboard's
// proven column (console/drills records what they show).

// hostDrills is the host page's drill section.
type hostDrills struct {
	Last *storage.LastDrill
	// Recent are the newest drills, newest first (the table).
	Recent []storage.DrillPoint
	// RateChart and RTOChart draw the whole history.
	RateChart, RTOChart template.HTML
	// Targets are the hosts a drill may run on instead (bound to a
	// repository), Hooks the probes this host offers.
	Targets []drillTarget
}

// drillTarget is a host a drill may run on: its repositories (the script
// offers it only for those) and its hooks (the probes it can run).
type drillTarget struct {
	ID, Name string
	Repos    string // space-separated repository IDs it is bound to
	Hooks    string // space-separated hook names
}

// drillTableRows bounds the host page's drill table; the chart and the API
// have the whole history.
const drillTableRows = 20

func (s *Server) hostDrillsOf(h storage.Host, repos []storage.Repo) (hostDrills, error) {
	d := hostDrills{Last: h.LastDrill}
	pts, err := s.store.DrillHistory(h.ID)
	if err != nil {
		return d, err
	}
	var rate, rto []chartPoint
	for _, p := range pts {
		if p.RestoreBytesPerS > 0 {
			rate = append(rate, chartPoint{p.At, p.RestoreBytesPerS})
		}
		if p.EstimatedFullRestoreS > 0 {
			rto = append(rto, chartPoint{p.At, p.EstimatedFullRestoreS})
		}
	}
	d.RateChart = svgChart(rate, func(v float64) string { return humanBytes(uint64(v)) + "/s" }, "restore rate over time")
	d.RTOChart = svgChart(rto, humanSeconds, "estimated full-restore time over time")
	for i := len(pts) - 1; i >= 0 && len(d.Recent) < drillTableRows; i-- {
		d.Recent = append(d.Recent, pts[i])
	}
	bound := map[string][]string{}
	for _, rp := range repos {
		for _, id := range rp.Hosts {
			if id != h.ID {
				bound[id] = append(bound[id], rp.ID)
			}
		}
	}
	for _, id := range slices.Sorted(maps.Keys(bound)) {
		t, err := s.store.GetHost(id)
		if err != nil || !t.Enrolled {
			continue
		}
		d.Targets = append(d.Targets, drillTarget{ID: t.ID, Name: t.Name, Repos: strings.Join(bound[id], " "), Hooks: strings.Join(t.Hooks, " ")})
	}
	return d, nil
}

// jobDrill is the job page's report of a drill.
type jobDrill struct {
	Args wire.DrillArgs
	// ProvenName is the host whose backup the drill proves (the job's host
	// is where it ran).
	ProvenName string
	Out        *wire.DrillOutput
	// Invalid: the agent's report did not pass validation (not shown).
	Invalid bool
}

func (s *Server) jobDrillOf(j storage.Job) *jobDrill {
	if j.Kind != wire.JobDrill {
		return nil
	}
	d := &jobDrill{}
	_ = json.Unmarshal(j.Args, &d.Args)
	d.ProvenName = d.Args.HostID
	if h, err := s.store.GetHost(d.Args.HostID); err == nil {
		d.ProvenName = h.Name
	}
	if len(j.Output) > 0 && string(j.Output) != "null" {
		var out wire.DrillOutput
		if json.Unmarshal(j.Output, &out) == nil && out.Validate() == nil {
			d.Out = &out
		} else {
			d.Invalid = true
		}
	}
	return d
}

// humanSeconds is a duration in seconds as a person reads an RTO.
func humanSeconds(s float64) string {
	switch {
	case s < 120:
		return fmt.Sprintf("%.0f s", s)
	case s < 2*3600:
		return fmt.Sprintf("%.0f min", s/60)
	case s < 48*3600:
		return fmt.Sprintf("%.1f h", s/3600)
	}
	return fmt.Sprintf("%.1f days", s/86400)
}
