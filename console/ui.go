package console

import (
	"embed"
	"errors"
	"html/template"
	"io/fs"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/storage"
)

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
		r.Get("/", c.pageDashboard)
		r.Get("/jobs/{id}", c.pageJob)
		r.Get("/repos/{id}", c.pageRepo)
	})
}

func (c *Console) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		c.log.Error("render", "template", name, "error", err)
	}
}

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

type dashboardData struct {
	User      principal
	Hosts     []hostView
	Online    int
	Offline   int
	Jobs      []storage.Job
	HostNames map[string]string
	Repos     []repoView
}

// dashboardHosts caps what one page renders; the API pages past it.
const dashboardHosts = 500

func (c *Console) pageDashboard(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	hosts, err := c.store.ListHosts("", dashboardHosts)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	d := dashboardData{User: p, HostNames: map[string]string{}}
	for _, h := range hosts {
		d.Hosts = append(d.Hosts, c.viewHost(h))
		d.HostNames[h.ID] = h.Name
		if h.Online {
			d.Online++
		} else {
			d.Offline++
		}
	}
	d.Jobs, _, err = c.store.ListJobs(storage.JobQuery{Limit: 25})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	repos, err := c.store.ListRepos()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	for _, rp := range repos {
		d.Repos = append(d.Repos, viewRepo(rp))
	}
	c.render(w, "dashboard.html", d)
}

func (c *Console) pageJob(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	j, err := c.store.GetJob(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	hostName := j.HostID
	if h, err := c.store.GetHost(j.HostID); err == nil {
		hostName = h.Name
	}
	c.render(w, "job.html", map[string]any{"User": p, "Job": j, "HostName": hostName})
}

func (c *Console) pageRepo(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	rp, err := c.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	c.render(w, "repo.html", map[string]any{"User": p, "Repo": viewRepo(rp)})
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
