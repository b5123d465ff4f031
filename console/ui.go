package console

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"net/url"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/storage"
)

// The web console: server-rendered pages (html/template escapes every
// value) with one small script, web/static/app.js, that drives actions
// through the JSON API with fetch() and live job updates through SSE. The
// Content-Security-Policy forbids inline scripts, so pages hand data to the
// script in data- attributes only.

//go:embed web/templates/*.html web/static/*
var webFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	"ago":   ago,
	"since": func(t time.Time) string { return ago(&t) },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"statusClass": func(s string) string { return "st-" + s },
	"bytes":       humanBytes,
	"operator":    func(p principal) bool { return roleRank[p.Role] >= roleRank[RoleOperator] },
	"admin":       func(p principal) bool { return p.Role == RoleAdmin },
	"stamp":       func(t time.Time) string { return t.Format("2006-01-02 15:04 MST") },
	"stampp": func(t *time.Time) string {
		if t == nil || t.IsZero() {
			return "—"
		}
		return t.Format("2006-01-02 15:04 MST")
	},
	"cronText": describeCron,
	"join":     strings.Join,
	"list":     func(s ...string) []string { return s },
	"duration": func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() {
			return ""
		}
		return b.Sub(a).Round(time.Second).String()
	},
}).ParseFS(webFS, "web/templates/*.html"))

func ago(t *time.Time) string {
	if t == nil || t.IsZero() {
		return "never"
	}
	d := time.Since(*t)
	switch {
	case d < time.Minute:
		return "just now"
	case d < time.Hour:
		return plural(int(d/time.Minute), "minute") + " ago"
	case d < 48*time.Hour:
		return plural(int(d/time.Hour), "hour") + " ago"
	}
	return plural(int(d/(24*time.Hour)), "day") + " ago"
}

func plural(n int, unit string) string {
	s := strconv.Itoa(n) + " " + unit
	if n != 1 {
		s += "s"
	}
	return s
}

func (c *Console) mountUI(r chi.Router, loginLimit func(http.Handler) http.Handler) {
	static, _ := fs.Sub(webFS, "web/static")
	r.Handle("/static/*", http.StripPrefix("/static/", http.FileServerFS(static)))
	r.Get("/login", c.pageLogin)
	r.With(loginLimit).Post("/login", c.formLogin)
	r.Post("/logout", func(w http.ResponseWriter, r *http.Request) {
		c.endSession(w, r)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
	r.Group(func(r chi.Router) {
		r.Use(c.requireAuth(false))
		r.Get("/", c.dashboardHandler(&fleetCache{}))
		r.Get("/hosts/{id}", c.pageHost)
		r.Get("/jobs/{id}", c.pageJob)
		r.Get("/repos/{id}", c.pageRepo)
		r.Get("/restore", c.pageRestore)
		r.Get("/settings", c.pageSettings)
		r.Get("/alerts", c.pageAlerts)
		// A read-only helper for the schedule editor's live preview; it
		// changes nothing, so every role may call it.
		r.Get("/ui/cron", c.uiCronPreview)
	})
}

func (c *Console) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		c.log.Error("render", "template", name, "error", err)
	}
}

// pageError renders a page-level error in words, with the status code.
func (c *Console) pageError(w http.ResponseWriter, r *http.Request, err error) {
	p, _ := principalFrom(r.Context())
	code, msg := http.StatusInternalServerError, "Something went wrong on the server; the log has the details. Try again, or report it if it keeps happening."
	switch {
	case errors.Is(err, storage.ErrNotFound):
		code, msg = http.StatusNotFound, "This item does not exist (any more). Go back to the fleet and pick it again."
	case errors.Is(err, errForbiddenPage):
		code, msg = http.StatusForbidden, "Your role cannot open this page. Ask an administrator if you need it."
	case errors.Is(err, errBadRequest), errors.Is(err, storage.ErrInvalid):
		code, msg = http.StatusBadRequest, err.Error()
	default:
		c.log.Error("page failed", "path", r.URL.Path, "error", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := templates.ExecuteTemplate(w, "error.html", map[string]any{"User": p, "Message": msg, "Code": code}); err != nil {
		c.log.Error("render", "template", "error.html", "error", err)
	}
}

var errForbiddenPage = errors.New("forbidden")

func (c *Console) pageLogin(w http.ResponseWriter, r *http.Request) {
	c.render(w, "login.html", map[string]any{"Error": ""})
}

func (c *Console) formLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	u, err := c.login(r, r.PostForm.Get("username"), r.PostForm.Get("password"))
	if err != nil {
		msg := "Wrong username or password."
		if errors.Is(err, errLocked) {
			msg = "Too many failed logins. Try again later."
		}
		w.WriteHeader(http.StatusUnauthorized)
		c.render(w, "login.html", map[string]any{"Error": msg})
		return
	}
	if err := c.startSession(w, u.Name); err != nil {
		c.fail(w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// ---- fleet dashboard

// Host states for the dashboard's counts and filter.
const (
	stateOK      = "ok"
	stateWarning = "warning"
	stateFailing = "failing"
	stateOffline = "offline"
)

// Backup age thresholds: a daily backup that is a little late is amber,
// three days without one is red. (Per-host intervals from schedules would
// be better; these match a daily schedule, the common case.)
const (
	ageAmber = 26 * time.Hour
	ageRed   = 72 * time.Hour
)

// hostState classifies a host from its record alone, so the counts over
// the whole fleet cost one scan and no per-host lookups.
func hostState(h storage.Host, now time.Time) string {
	if !h.Enrolled || !h.Online {
		return stateOffline
	}
	b := h.LastBackup
	if b == nil {
		return stateWarning // never backed up
	}
	switch b.Status {
	case storage.JobFailed, storage.JobExpired:
		return stateFailing
	case storage.JobPartial, storage.JobCancelled:
		return stateWarning
	}
	// Age counts from the last backup that made a snapshot.
	last := b.EndedAt
	if h.LastSuccess != nil {
		last = h.LastSuccess.EndedAt
	}
	switch age := now.Sub(last); {
	case age >= ageRed:
		return stateFailing
	case age >= ageAmber:
		return stateWarning
	}
	return stateOK
}

// ageClass colours the last backup's age.
func ageClass(b *storage.LastBackup, now time.Time) string {
	if b == nil {
		return "age-none"
	}
	if b.Status != storage.JobSucceeded && b.Status != storage.JobPartial {
		return "age-bad"
	}
	switch age := now.Sub(b.EndedAt); {
	case age >= ageRed:
		return "age-bad"
	case age >= ageAmber:
		return "age-warn"
	}
	return "age-ok"
}

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
	hostView
	State    string
	AgeClass string
	Repo     *repoBadge
}

type stateCounts struct {
	Total, OK, Warning, Failing, Offline int
}

type dashboardData struct {
	User      principal
	Rows      []dashRow
	Counts    stateCounts
	Q         string
	State     string
	Page      int
	Pages     int
	Matched   int
	PrevURL   string
	NextURL   string
	Jobs      []storage.Job
	HostNames map[string]string
	Repos     []repoView
	Now       time.Time
}

// dashboardPageSize bounds what one page renders; the counts still cover
// the whole fleet.
const dashboardPageSize = 100

// hostScanBatch is how many host records one store read returns while the
// dashboard walks the fleet.
const hostScanBatch = 1000

// fleetHost is what the dashboard's counts, filter and search need of a
// host: decoding 10,000 full host records costs ~300 ms, so large fleets
// reuse this summary for fleetCacheTTL (the rows of the page shown are
// always read fresh).
type fleetHost struct {
	ID, name, hostname string // name and hostname lower-cased for search
	Enrolled, Online   bool
	LastBackup         *storage.LastBackup
	LastSuccess        *storage.LastBackup
}

type fleetCache struct {
	mu    sync.Mutex
	at    time.Time
	hosts []fleetHost
}

// Below fleetCacheMin hosts a scan is cheap (<~60 ms) and counts stay exact;
// above it the counts may lag the store by up to fleetCacheTTL.
const (
	fleetCacheTTL = 5 * time.Second
	fleetCacheMin = 2000
)

// fleet returns the summary of every host, ordered by ID. The slice is
// shared and never modified: a rebuild makes a new one.
func (c *Console) fleet(fc *fleetCache) ([]fleetHost, error) {
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if len(fc.hosts) >= fleetCacheMin && time.Since(fc.at) < fleetCacheTTL {
		return fc.hosts, nil
	}
	out := make([]fleetHost, 0, len(fc.hosts))
	after := ""
	for {
		batch, err := c.store.ListHosts(after, hostScanBatch)
		if err != nil {
			return nil, err
		}
		for _, h := range batch {
			out = append(out, fleetHost{ID: h.ID, name: strings.ToLower(h.Name), hostname: strings.ToLower(h.Hostname),
				Enrolled: h.Enrolled, Online: h.Online, LastBackup: h.LastBackup, LastSuccess: h.LastSuccess})
		}
		if len(batch) < hostScanBatch {
			break
		}
		after = batch[len(batch)-1].ID
	}
	fc.hosts, fc.at = out, time.Now()
	return out, nil
}

func (c *Console) dashboardHandler(fc *fleetCache) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) { c.pageDashboard(fc, w, r) }
}

func (c *Console) pageDashboard(fc *fleetCache, w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	q := r.URL.Query()
	now := time.Now()
	d := dashboardData{User: p, HostNames: map[string]string{}, Now: now,
		Q: strings.TrimSpace(q.Get("q")), State: q.Get("state")}
	switch d.State {
	case stateOK, stateWarning, stateFailing, stateOffline:
	default:
		d.State = ""
	}
	d.Page, _ = strconv.Atoi(q.Get("page"))
	d.Page = max(d.Page, 1)
	needle := strings.ToLower(d.Q)
	offset := (d.Page - 1) * dashboardPageSize

	// One pass over the fleet: counts for everyone, rows only for the
	// requested page of the hosts that match.
	all, err := c.fleet(fc)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	var pageIDs []string
	for _, h := range all {
		st := hostState(storage.Host{Enrolled: h.Enrolled, Online: h.Online, LastBackup: h.LastBackup, LastSuccess: h.LastSuccess}, now)
		d.Counts.Total++
		switch st {
		case stateOK:
			d.Counts.OK++
		case stateWarning:
			d.Counts.Warning++
		case stateFailing:
			d.Counts.Failing++
		case stateOffline:
			d.Counts.Offline++
		}
		if d.State != "" && st != d.State {
			continue
		}
		if needle != "" && !strings.Contains(h.name, needle) && !strings.Contains(h.hostname, needle) && !strings.Contains(h.ID, needle) {
			continue
		}
		if d.Matched >= offset && d.Matched < offset+dashboardPageSize {
			pageIDs = append(pageIDs, h.ID)
		}
		d.Matched++
	}
	var page []storage.Host
	for _, id := range pageIDs {
		h, err := c.store.GetHost(id)
		if errors.Is(err, storage.ErrNotFound) {
			continue // removed since the summary was built
		}
		if err != nil {
			c.pageError(w, r, err)
			return
		}
		page = append(page, h)
	}
	d.Pages = max(1, (d.Matched+dashboardPageSize-1)/dashboardPageSize)

	repos, err := c.store.ListRepos()
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	badges := map[string]repoBadge{}
	for _, rp := range repos {
		d.Repos = append(d.Repos, viewRepo(rp))
		badges[rp.ID] = badgeFor(rp)
	}
	for _, h := range page {
		row := dashRow{hostView: c.viewHost(h), State: hostState(h, now), AgeClass: ageClass(h.LastBackup, now)}
		// The repository a host backs up to: its last backup's.
		if h.LastBackup != nil {
			if j, err := c.store.GetJob(h.LastBackup.JobID); err == nil {
				if b, ok := badges[j.RepoID]; ok {
					row.Repo = &b
				}
			}
		}
		d.Rows = append(d.Rows, row)
		d.HostNames[h.ID] = h.Name
	}
	link := func(pg int) string {
		v := url.Values{}
		if d.Q != "" {
			v.Set("q", d.Q)
		}
		if d.State != "" {
			v.Set("state", d.State)
		}
		v.Set("page", strconv.Itoa(pg))
		return "/?" + v.Encode()
	}
	if d.Page > 1 {
		d.PrevURL = link(d.Page - 1)
	}
	if d.Page < d.Pages {
		d.NextURL = link(d.Page + 1)
	}

	d.Jobs, _, err = c.store.ListJobs(storage.JobQuery{Limit: 25})
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	for _, j := range d.Jobs {
		if _, ok := d.HostNames[j.HostID]; !ok {
			if h, err := c.store.GetHost(j.HostID); err == nil {
				d.HostNames[j.HostID] = h.Name
			}
		}
	}
	c.render(w, "dashboard.html", d)
}

// humanBytes renders a size with binary units.
func humanBytes(n uint64) string {
	const unit = 1024
	if n < unit {
		return strconv.FormatUint(n, 10) + " B"
	}
	div, exp := uint64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return strconv.FormatFloat(float64(n)/float64(div), 'f', 1, 64) + " " + string("KMGTPE"[exp]) + "iB"
}

// pageAlerts lists alerts, firing first, with acknowledge and silence for
// operators.
func (c *Console) pageAlerts(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	alerts, err := c.store.ListAlerts(true)
	if err != nil {
		c.pageError(w, r, err)
		return
	}
	sort.SliceStable(alerts, func(i, j int) bool {
		if (alerts[i].State == storage.AlertFiring) != (alerts[j].State == storage.AlertFiring) {
			return alerts[i].State == storage.AlertFiring
		}
		return alerts[i].Since.After(alerts[j].Since)
	})
	c.render(w, "alerts.html", map[string]any{"User": p, "Alerts": alerts})
}
