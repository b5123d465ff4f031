package ui

import (
	"errors"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/drills"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/view"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// The fleet dashboard: counts by state over the whole fleet, the hosts of
// one page with their state, search and filter. A host's state is
// fleet.Assess's, the same the alerts fire from.

type repoBadge struct {
	ID, Name, Text, Class string
}

func badgeFor(rp storage.Repo) repoBadge {
	b := repoBadge{ID: rp.ID, Name: rp.Name, Text: "no report", Class: "st-queued"}
	h := rp.Health
	switch {
	case h == nil:
	case h.Locks.Stale > 0:
		b.Text, b.Class = "stale lock", "st-failed"
	case h.LastCheck != nil && !h.LastCheck.OK:
		b.Text, b.Class = "check failed", "st-failed"
	case h.LastCheck == nil:
		b.Text, b.Class = "never checked", "st-partial"
	default:
		b.Text, b.Class = "healthy", "st-succeeded"
	}
	return b
}

type dashRow struct {
	view.Host
	State    string
	AgeClass string
	Repo     *repoBadge
	// LabelLinks are the host's labels in key order, each a link to the
	// dashboard filtered by it as well.
	LabelLinks []labelLink
	// Proven: the host's drills (console/drills.Proven): ok, failed, never.
	Proven string
}

// labelLink is a label (or a filter term) and the dashboard address that
// adds it to (or, for a term of the filter, removes it from) the filter.
type labelLink struct {
	Text, URL string
}

type stateCounts struct {
	Total, OK, Warning, Failing, Offline int
	// Proven: hosts whose last drill passed (drills.Proven "ok").
	Proven int
}

type dashboardData struct {
	// Charts: the fleet's last 30 days (fleetcharts.go).
	Charts fleetCharts
	User   auth.Principal
	Rows   []dashRow
	Counts stateCounts
	Q      string
	State  string
	// Proven filters by the hosts' drills (?proven=ok|failed|never).
	Proven       string
	ProvenStates []string
	Page         int
	Pages        int
	Matched      int
	PrevURL      string
	NextURL      string
	Jobs         []storage.Job
	HostNames    map[string]string
	Repos        []view.Repo
	Now          time.Time

	// Labels is the label filter (?label=key=value or ?label=key, all
	// must hold), LabelTerms the same with links that drop each term.
	Labels     []string
	LabelTerms []labelLink
	LabelError string
	Filtered   bool // by search, state or labels

	// Bulk is the "run on these hosts" control: shown to operators while
	// a filter is active (see bulkRun).
	Bulk *bulkRun
	// Compliance: the fleet's RPO totals (nil: no policy sets an RPO).
	Compliance *complianceView
}

// bulkRun is what the dashboard's bulk control needs: every host the
// filter matches (not only the page shown), sent as host_ids so that the
// hosts the person confirmed are the ones that get a job.
type bulkRun struct {
	Hosts   string // the matching host IDs, space-separated
	Count   int
	TooMany bool // more than one run takes: narrow the filter
	Max     int
}

// dashboardPageSize bounds what one page renders; the counts still cover
// the whole fleet.
const dashboardPageSize = 100

// hostScanBatch is how many host records one store read returns while the
// dashboard walks the fleet.
const hostScanBatch = 1000

// fleetHost is what the dashboard's counts, filter and search need of a
// host: decoding 10,000 full host records and their schedules costs a few
// hundred ms, so large fleets reuse this summary for fleetCacheTTL (the
// rows of the page shown are always read and assessed afresh).
type fleetHost struct {
	ID, name, hostname string // name and hostname lower-cased for search
	state              string
	proven             string            // drills.Proven
	labels             map[string]string // the record's own map, never modified
}

type fleetCache struct {
	mu    sync.Mutex
	at    time.Time
	hosts []fleetHost
}

// Below fleetCacheMin hosts a scan is cheap and counts stay exact; above it
// the counts may lag the store by up to fleetCacheTTL.
const (
	fleetCacheTTL = 5 * time.Second
	fleetCacheMin = 2000
)

// summary returns the summary of every host, ordered by ID. The slice is
// shared and never modified: a rebuild makes a new one.
func (s *Server) summary(fc *fleetCache, now time.Time) ([]fleetHost, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.hosts) >= fleetCacheMin && time.Since(fc.at) < fleetCacheTTL {
		return fc.hosts, nil
	}
	out := make([]fleetHost, 0, len(fc.hosts))
	after := ""
	for {
		batch, err := s.store.ListHosts(after, hostScanBatch)
		if err != nil {
			return nil, err
		}
		for _, h := range batch {
			out = append(out, fleetHost{ID: h.ID, name: strings.ToLower(h.Name), hostname: strings.ToLower(h.Hostname),
				state: s.fleet.AssessHost(h, now).State, proven: drills.Proven(h), labels: h.Labels})
		}
		if len(batch) < hostScanBatch {
			break
		}
		after = batch[len(batch)-1].ID
	}
	fc.hosts, fc.at = out, time.Now()
	return out, nil
}

func (s *Server) dashboardHandler(fc *fleetCache) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { s.pageDashboard(fc, w, r) }
}

func (s *Server) pageDashboard(fc *fleetCache, w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	q := r.URL.Query()
	now := time.Now()
	d := dashboardData{User: p, HostNames: map[string]string{}, Now: now,
		Q: strings.TrimSpace(q.Get("q")), State: q.Get("state"), Proven: q.Get("proven"), ProvenStates: drills.ProvenStates}
	if !slices.Contains(drills.ProvenStates, d.Proven) {
		d.Proven = ""
	}
	switch d.State {
	case fleet.StateOK, fleet.StateWarning, fleet.StateFailing, fleet.StateOffline:
	default:
		d.State = ""
	}
	var terms []string
	for _, t := range q["label"] {
		if t = strings.TrimSpace(t); t != "" {
			terms = append(terms, t) // the filter form's empty field adds none
		}
	}
	labels, err := wire.ParseLabelFilter(terms)
	if err != nil {
		// Shown with the filter; nothing matches until it is fixed.
		d.LabelError, d.Labels = err.Error(), terms
	} else {
		d.Labels = labels.Strings()
	}
	d.Filtered = d.Q != "" || d.State != "" || d.Proven != "" || len(d.Labels) > 0
	d.Page, _ = strconv.Atoi(q.Get("page"))
	d.Page = max(d.Page, 1)
	needle := strings.ToLower(d.Q)
	offset := (d.Page - 1) * dashboardPageSize

	// One pass over the fleet: counts for everyone, rows only for the
	// requested page of the hosts that match.
	all, err := s.summary(fc, now)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	var pageIDs, bulkIDs []string
	bulk := d.Filtered && d.LabelError == "" && p.Can(auth.RoleOperator)
	for _, h := range all {
		st := h.state
		d.Counts.Total++
		switch st {
		case fleet.StateOK:
			d.Counts.OK++
		case fleet.StateWarning:
			d.Counts.Warning++
		case fleet.StateFailing:
			d.Counts.Failing++
		case fleet.StateOffline:
			d.Counts.Offline++
		}
		if h.proven == "ok" {
			d.Counts.Proven++
		}
		if d.State != "" && st != d.State || d.Proven != "" && h.proven != d.Proven {
			continue
		}
		if needle != "" && !strings.Contains(h.name, needle) && !strings.Contains(h.hostname, needle) && !strings.Contains(h.ID, needle) {
			continue
		}
		if d.LabelError != "" || !labels.Matches(h.labels) {
			continue
		}
		if d.Matched >= offset && d.Matched < offset+dashboardPageSize {
			pageIDs = append(pageIDs, h.ID)
		}
		if bulk && d.Matched < fleet.MaxBulkHosts {
			bulkIDs = append(bulkIDs, h.ID)
		}
		d.Matched++
	}
	if bulk && d.Matched > 0 {
		d.Bulk = &bulkRun{Count: d.Matched, TooMany: d.Matched > fleet.MaxBulkHosts, Max: fleet.MaxBulkHosts}
		if !d.Bulk.TooMany {
			d.Bulk.Hosts = strings.Join(bulkIDs, " ")
		}
	}
	var page []storage.Host
	for _, id := range pageIDs {
		h, err := s.store.GetHost(id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // removed since the summary was built
		}
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		page = append(page, h)
	}
	d.Pages = max(1, (d.Matched+dashboardPageSize-1)/dashboardPageSize)

	repos, err := s.store.ListRepos()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	badges := map[string]repoBadge{}
	for _, rp := range repos {
		d.Repos = append(d.Repos, view.RepoOf(rp))
		badges[rp.ID] = badgeFor(rp)
	}
	for _, h := range page {
		hs, _ := s.store.GetSchedules(h.ID)
		st := s.fleet.Assess(h, hs, now)
		row := dashRow{Host: view.HostWith(h, hs, now), State: st.State, AgeClass: st.AgeClass, Proven: drills.Proven(h)}
		for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
			term := k + "=" + h.Labels[k]
			with := d.Labels
			if !slices.Contains(with, term) {
				with = append(slices.Clip(with), term)
			}
			row.LabelLinks = append(row.LabelLinks, labelLink{Text: term, URL: dashboardURLWith(d.Q, d.State, d.Proven, with, 0)})
		}
		// The repository a host backs up to: its last backup's.
		if h.LastBackup != nil {
			if j, err := s.store.GetJob(h.LastBackup.JobID); err == nil {
				if b, ok := badges[j.RepoID]; ok {
					row.Repo = &b
				}
			}
		}
		d.Rows = append(d.Rows, row)
		d.HostNames[h.ID] = h.Name
	}
	for i, t := range d.Labels {
		without := slices.Delete(slices.Clone(d.Labels), i, i+1)
		d.LabelTerms = append(d.LabelTerms, labelLink{Text: t, URL: dashboardURLWith(d.Q, d.State, d.Proven, without, 0)})
	}
	link := func(pg int) string { return dashboardURLWith(d.Q, d.State, d.Proven, d.Labels, pg) }
	if d.Page > 1 {
		d.PrevURL = link(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.NextURL = link(d.Page + 1)
	}

	d.Compliance = s.complianceTotals(r.Context(), now)
	d.Jobs, _, err = s.store.ListJobs(storage.JobQuery{Limit: 25})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	for _, j := range d.Jobs {
		if _, ok := d.HostNames[j.HostID]; !ok {
			if h, err := s.store.GetHost(j.HostID); err == nil {
				d.HostNames[j.HostID] = h.Name
			}
		}
	}
	d.Charts = s.fleetCharts(now)
	s.render(w, "dashboard.html", d)
}

// dashboardURL is the dashboard with a search, state and label filter, at
// a page (0: the first, unnamed).
func dashboardURL(q, state string, labels []string, page int) string {
	return dashboardURLWith(q, state, "", labels, page)
}

// dashboardURLWith is dashboardURL with the proven filter too.
func dashboardURLWith(q, state, proven string, labels []string, page int) string {
	v := url.Values{}
	if q != "" {
		v.Set("q", q)
	}
	if state != "" {
		v.Set("state", state)
	}
	if proven != "" {
		v.Set("proven", proven)
	}
	if len(labels) > 0 {
		v["label"] = labels
	}
	if page > 0 {
		v.Set("page", strconv.Itoa(page))
	}
	if len(v) == 0 {
		return "/"
	}
	return "/?" + v.Encode()
}
