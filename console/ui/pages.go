package ui

import (
	"encoding/json"
	"fmt"
	"maps"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/view"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// ---- host page

type hostPageData struct {
	User      auth.Principal
	Host      view.Host
	Scheds    view.Schedules
	SchedJSON string // the current set, for the editor (a data- attribute)
	Repos     []view.Repo
	RepoByID  map[string]*view.Repo
	Jobs      []storage.Job
	Status    string
	NextURL   string
	Kinds     []string
	// CopyDests: the repositories a copy from this host may write (it is
	// bound to them); the form hides the source.
	CopyDests []view.Repo
	Statuses  []string

	// The host's labels: links to the dashboard filtered by each, and the
	// editor's text (key=value lines).
	LabelLinks []labelLink
	LabelText  string

	// Drills: the host's restore drills and the "run a drill now" form.
	Drills hostDrills
}

// RestoreSource reports whether the host's agent can restore into source
// name (it has a restore command for it).
func (d hostPageData) RestoreSource(name string) bool {
	return slices.Contains(d.Host.RestoreSources, name)
}

// hostJobPage is the job history's page size on the host page.
const hostJobPage = 25

func (s *Server) pageHost(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	h, err := s.store.GetHost(chi.URLParam(r, "id"))
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	hs, err := s.store.GetSchedules(h.ID)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	d := hostPageData{User: p, Host: view.HostOf(s.store, h), Scheds: view.SchedulesOf(hs, h.Online),
		Status: r.URL.Query().Get("status"),
		// The kinds the host page's "run now" form offers: those that need
		// no arguments there (restore, diff and browsing have pages of
		// their own).
		Kinds:    []string{wire.JobBackup, wire.JobCheck, wire.JobSnapshots, wire.JobStats, wire.JobForget, wire.JobPrune, wire.JobUnlock, wire.JobInit, wire.JobCopy},
		Statuses: wire.JobStatuses()}
	set := hs.Schedules
	if set == nil {
		set = []schedules.Schedule{}
	}
	b, _ := json.Marshal(set)
	d.SchedJSON = string(b)
	for _, k := range slices.Sorted(maps.Keys(h.Labels)) {
		term := k + "=" + h.Labels[k]
		d.LabelLinks = append(d.LabelLinks, labelLink{Text: term, URL: dashboardURL("", "", []string{term}, 0)})
		d.LabelText += term + "\n"
	}
	repos, err := s.store.ListRepos()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	d.RepoByID = map[string]*view.Repo{}
	for _, rp := range repos {
		v := view.RepoOf(rp)
		d.Repos = append(d.Repos, v)
		d.RepoByID[rp.ID] = &v
		if s.fleet.MayReceive(rp.ID, h.ID) { // a copy writes only where the host is bound
			d.CopyDests = append(d.CopyDests, v)
		}
	}
	if d.Drills, err = s.hostDrillsOf(h, repos); err != nil {
		s.pageError(w, r, err)
		return
	}
	jobs, next, err := s.store.ListJobs(storage.JobQuery{HostID: h.ID, Status: d.Status, Limit: hostJobPage, Cursor: r.URL.Query().Get("cursor")})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	d.Jobs = jobs
	if next != "" {
		v := url.Values{"cursor": {next}}
		if d.Status != "" {
			v.Set("status", d.Status)
		}
		d.NextURL = "/hosts/" + url.PathEscape(h.ID) + "?" + v.Encode() + "#history"
	}
	s.render(w, "host.html", d)
}

// ---- job page

type jobPageData struct {
	User     auth.Principal
	Job      storage.Job
	HostName string
	RepoName string
	Result   jobResult
	// Sources are a backup's snapshots, per source, when it named sources.
	Sources []wire.SourceSnapshot
	// Drill is a drill's report (nil for other kinds).
	Drill *jobDrill
	// Copy is a copy's report (nil for other kinds).
	Copy *jobCopy
	// Bandwidth is a backup's, copy's or restore's limit in force (nil: none).
	Bandwidth *view.Bandwidth
	// KindFacts say what the job did in its kind's terms; ArgFacts are its
	// arguments as labelled fields (jobkinds.go).
	KindFacts, ArgFacts []fact
}

// jobResult is what the page shows of a finished job's outcome.
type jobResult struct {
	DataAdded      uint64
	FilesNew       uint64
	FilesChanged   uint64
	FilesProcessed uint64
	BytesProcessed uint64
	Duration       string
	HasSummary     bool
}

func summarize(j storage.Job) jobResult {
	var r jobResult
	var s struct {
		DataAdded           uint64  `json:"data_added"`
		FilesNew            uint64  `json:"files_new"`
		FilesChanged        uint64  `json:"files_changed"`
		TotalFilesProcessed uint64  `json:"total_files_processed"`
		TotalBytesProcessed uint64  `json:"total_bytes_processed"`
		TotalDuration       float64 `json:"total_duration"`
	}
	// The data-added row is a backup's: a restore's summary is its own
	// (jobkinds.go), not "Data added 0 B".
	if j.Kind == wire.JobBackup && len(j.Summary) > 0 && json.Unmarshal(j.Summary, &s) == nil {
		r = jobResult{DataAdded: s.DataAdded, FilesNew: s.FilesNew, FilesChanged: s.FilesChanged,
			FilesProcessed: s.TotalFilesProcessed, BytesProcessed: s.TotalBytesProcessed, HasSummary: true}
	}
	if !j.StartedAt.IsZero() && !j.EndedAt.IsZero() {
		r.Duration = j.EndedAt.Sub(j.StartedAt).Round(100 * time.Millisecond).String()
	}
	return r
}

func (s *Server) pageJob(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	j, err := s.store.GetJob(chi.URLParam(r, "id"))
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	j = s.fleet.LiveJob(j)
	d := jobPageData{User: p, Job: j, HostName: j.HostID, RepoName: j.RepoID, Result: summarize(j), Sources: view.SourceSnapshots(j), Drill: s.jobDrillOf(j), Copy: s.jobCopyOf(j),
		Bandwidth: view.BandwidthOf(j)}
	if h, err := s.store.GetHost(j.HostID); err == nil {
		d.HostName = h.Name
	}
	if rp, err := s.store.GetRepo(j.RepoID); err == nil {
		d.RepoName = rp.Name
	}
	d.ArgFacts, d.KindFacts = argFacts(j.Args), kindFacts(j)
	s.render(w, "job.html", d)
}

// ---- repository page

type snapshotRow struct {
	ID       string   `json:"id"`
	ShortID  string   `json:"short_id"`
	Time     string   `json:"time"`
	Hostname string   `json:"hostname"`
	Paths    []string `json:"paths"`
	Tags     []string `json:"tags"`
}

// repoSnapshotsShown bounds the snapshot table; the API has every one.
const repoSnapshotsShown = 200

func (s *Server) pageRepo(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	rp, err := s.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	var snaps []snapshotRow
	if raw, err := s.store.SnapshotCache(rp.ID); err == nil {
		_ = json.Unmarshal(raw, &snaps)
	}
	// Newest first: restic lists oldest first.
	for i, j := 0, len(snaps)-1; i < j; i, j = i+1, j-1 {
		snaps[i], snaps[j] = snaps[j], snaps[i]
	}
	total := len(snaps)
	if len(snaps) > repoSnapshotsShown {
		snaps = snaps[:repoSnapshotsShown]
	}
	// Charts: size from the health reports; backup duration from the most
	// recent jobs (a bounded walk of the job index).
	var sizes, durations []chartPoint
	if rp.Health != nil {
		for _, sp := range rp.Health.SizeHistory {
			sizes = append(sizes, chartPoint{sp.At, float64(sp.Bytes)})
		}
	}
	if jobs, _, err := s.store.ListJobs(storage.JobQuery{Limit: 500}); err == nil {
		for i := len(jobs) - 1; i >= 0; i-- {
			j := jobs[i]
			if j.RepoID == rp.ID && j.Kind == wire.JobBackup && j.Status == storage.JobSucceeded && !j.StartedAt.IsZero() {
				durations = append(durations, chartPoint{j.EndedAt, j.EndedAt.Sub(j.StartedAt).Seconds()})
			}
		}
	}
	names := map[string]string{}
	for _, id := range rp.Hosts {
		if h, err := s.store.GetHost(id); err == nil {
			names[id] = h.Name
		}
	}
	// The forget schedules of the repository's listed hosts (their own
	// and their policies'): the page previews what each would remove now.
	type forgetRow struct {
		HostID, HostName, Name, PolicyID string
		Retention                        string
		Schedule                         json.RawMessage
	}
	var forgets []forgetRow
	for _, id := range rp.Hosts {
		hs, err := s.store.GetSchedules(id)
		if err != nil {
			continue
		}
		for _, sc := range hs.Effective() {
			if sc.Kind != wire.JobForget || sc.RepoID != rp.ID {
				continue
			}
			b, _ := json.Marshal(map[string]any{"retention": sc.Retention, "tags": sc.Tags})
			forgets = append(forgets, forgetRow{HostID: id, HostName: names[id], Name: sc.Name, PolicyID: sc.PolicyID,
				Retention: retentionText(sc.Retention), Schedule: b})
		}
	}
	repoNames := map[string]string{}
	if rp.Health != nil {
		for _, l := range rp.Health.CopyLag {
			repoNames[l.ToRepoID] = l.ToRepoID
			if d, err := s.store.GetRepo(l.ToRepoID); err == nil {
				repoNames[l.ToRepoID] = d.Name
			}
		}
	}
	s.render(w, "repo.html", map[string]any{"User": p, "Repo": view.RepoOf(rp), "LastHostID": rp.LastHostID, "HostNames": names, "RepoNames": repoNames,
		"Snapshots": snaps, "SnapshotTotal": total, "Forgets": forgets,
		"SizeChart":     svgChart(sizes, func(v float64) string { return humanBytes(uint64(v)) }, "repository size over time"),
		"DurationChart": svgChart(durations, func(v float64) string { return fmt.Sprintf("%.0f s", v) }, "backup duration over time")})
}

// ---- restore wizard

type hostOption struct {
	ID, Name, Hostname string
	Online             bool
	// RestoreSources: the sources the host's agent can restore into.
	RestoreSources []string
}

// restoreHostsShown bounds the target host list; a fleet larger than this
// picks the target by ID in the wizard's text field.
const restoreHostsShown = 1000

func (s *Server) pageRestore(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	if !p.Can(auth.RoleOperator) {
		s.pageError(w, r, errForbiddenPage)
		return
	}
	repos, err := s.store.ListRepos()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	hosts, err := s.store.ListHosts("", restoreHostsShown)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	var opts []hostOption
	for _, h := range hosts {
		if h.Enrolled {
			opts = append(opts, hostOption{ID: h.ID, Name: h.Name, Hostname: h.Hostname, Online: h.Online, RestoreSources: h.RestoreSources})
		}
	}
	var rv []view.Repo
	for _, rp := range repos {
		rv = append(rv, view.RepoOf(rp))
	}
	s.render(w, "restore.html", map[string]any{"User": p, "Repos": rv, "Hosts": opts,
		"RepoID": r.URL.Query().Get("repo"), "SnapshotID": r.URL.Query().Get("snapshot")})
}

// ---- settings: API tokens for everyone; users, enrolment keys, channels
// and integration accounts for admins

func (s *Server) pageSettings(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	toks, err := s.auth.Tokens(p)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	// Every user, for the role each token acts with; shown to admins only.
	users, err := s.store.ListUsers()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	data := map[string]any{"User": p, "Tokens": view.TokensOf(toks, users, time.Now()), "TokenRoles": tokenRoles(p)}
	mine, err := s.auth.SecondFactorOf(p.User)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	data["SecondFactor"] = mine
	if p.Can(auth.RoleAdmin) {
		// Who has a second factor, for the reset buttons.
		enrolled := map[string]bool{}
		for _, u := range users {
			if sf, err := s.auth.SecondFactorOf(u.Name); err == nil && sf.Enrolled {
				enrolled[u.Name] = true
			}
		}
		data["Enrolled"], data["SecondFactorRequired"] = enrolled, s.auth.SecondFactorRequired()
		uv := make([]view.User, 0, len(users))
		for _, u := range users {
			uv = append(uv, view.UserOf(u))
		}
		chans, err := s.store.ListChannels()
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		mqttUsers, err := s.store.ListIntegrationUsers()
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		data["Users"], data["Channels"], data["MQTTUsers"] = uv, chans, view.IntegrationUsersOf(mqttUsers)
		keys, err := s.store.ListEnrollKeys()
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		data["EnrollKeys"] = view.EnrollKeysOf(keys, time.Now())
	}
	s.render(w, "settings.html", data)
}

// tokenRoles are the roles p may give a token, the last (p's own) the
// default.
func tokenRoles(p auth.Principal) []string {
	var out []string
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		if p.Can(role) {
			out = append(out, role)
		}
	}
	return out
}

// ---- cron preview

// uiCronPreview describes a cron expression and lists its next five runs
// (before the per-host jitter, which is only known once saved).
func (s *Server) uiCronPreview(w http.ResponseWriter, r *http.Request) {
	expr, tz := r.URL.Query().Get("cron"), r.URL.Query().Get("timezone")
	sched, err := schedules.ParseCron(expr, tz)
	if err != nil {
		httpx.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"description": describeCron(expr, tz), "next_runs": schedules.NextRuns(sched, time.Now(), 5)})
}

var weekdays = []string{"Sunday", "Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday"}

// describeCron turns the common cron shapes into a sentence; anything
// else is spelled out field by field, which is still readable.
func describeCron(expr, tz string) string {
	expr = strings.TrimSpace(expr)
	zone := " (" + tz + ")"
	if tz == "" {
		zone = " (UTC)"
	}
	switch expr {
	case "@hourly":
		return "every hour, on the hour"
	case "@daily", "@midnight":
		return "every day at 00:00" + zone
	case "@weekly":
		return "every Sunday at 00:00" + zone
	case "@monthly":
		return "on the 1st of every month at 00:00" + zone
	case "@yearly", "@annually":
		return "every 1 January at 00:00" + zone
	}
	if d, ok := strings.CutPrefix(expr, "@every "); ok {
		return "every " + strings.TrimSpace(d)
	}
	f := strings.Fields(expr)
	if len(f) != 5 {
		return expr
	}
	minute, hour, dom, month, dow := f[0], f[1], f[2], f[3], f[4]
	num := func(s string) (int, bool) { n, err := strconv.Atoi(s); return n, err == nil }
	m, mOK := num(minute)
	h, hOK := num(hour)
	at := ""
	if mOK && hOK {
		at = fmt.Sprintf(" at %02d:%02d", h, m) + zone
	}
	switch {
	case minute == "*" && hour == "*" && dom == "*" && month == "*" && dow == "*":
		return "every minute"
	case strings.HasPrefix(minute, "*/") && hour == "*" && dom == "*" && month == "*" && dow == "*":
		return "every " + strings.TrimPrefix(minute, "*/") + " minutes"
	case mOK && hour == "*" && dom == "*" && month == "*" && dow == "*":
		return fmt.Sprintf("every hour at minute %d", m)
	case mOK && strings.HasPrefix(hour, "*/") && dom == "*" && month == "*" && dow == "*":
		return fmt.Sprintf("every %s hours at minute %d", strings.TrimPrefix(hour, "*/"), m)
	case at != "" && dom == "*" && month == "*" && dow == "*":
		return "every day" + at
	case at != "" && dom == "*" && month == "*":
		if n, ok := num(dow); ok && n >= 0 && n <= 7 {
			return "every " + weekdays[n%7] + at
		}
		if dow == "1-5" {
			return "every weekday (Monday to Friday)" + at
		}
		return "on days of week " + dow + at
	case at != "" && month == "*" && dow == "*":
		return "on day " + dom + " of every month" + at
	}
	return fmt.Sprintf("minute %s, hour %s, day of month %s, month %s, day of week %s%s", minute, hour, dom, month, dow, zone)
}

// retentionText says a retention in words: "last 7, daily 14, within 30d".
func retentionText(r *wire.Retention) string {
	if r == nil {
		return "none"
	}
	var parts []string
	for _, p := range []struct {
		n    int
		name string
	}{{r.KeepLast, "last"}, {r.KeepHourly, "hourly"}, {r.KeepDaily, "daily"}, {r.KeepWeekly, "weekly"}, {r.KeepMonthly, "monthly"}, {r.KeepYearly, "yearly"}} {
		if p.n > 0 {
			parts = append(parts, fmt.Sprintf("%s %d", p.name, p.n))
		}
	}
	if r.KeepWithin != "" {
		parts = append(parts, "within "+r.KeepWithin)
	}
	if len(parts) == 0 {
		return "none"
	}
	return "keep " + strings.Join(parts, ", ")
}
