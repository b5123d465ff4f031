package ui

import (
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net/http"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/console/policy"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// The web console: server-rendered pages (html/template escapes every
// value) with one small script, web/static/app.js, that drives actions
// through the JSON API with fetch() and live job updates through SSE. The
// Content-Security-Policy forbids inline scripts, so pages hand data to the
// script in data- attributes only.

//go:embed web/templates/*.html web/static/*
var webFS embed.FS

var templates = template.Must(template.New("").Funcs(template.FuncMap{
	// Times are <time datetime> elements: the server writes a relative age
	// (or a UTC stamp), the browser turns them into the viewer's time zone
	// with the other form on hover (app.js: localTimes).
	"ago":   func(t *time.Time) template.HTML { return timeHTML(t, "rel", ago(t)) },
	"since": func(t time.Time) template.HTML { return timeHTML(&t, "rel", ago(&t)) },
	"short": func(s string) string {
		if len(s) > 12 {
			return s[:12]
		}
		return s
	},
	"statusClass": func(s string) string { return "st-" + s },
	"bytes":       humanBytes,
	"operator":    func(p auth.Principal) bool { return p.Can(auth.RoleOperator) },
	"admin":       func(p auth.Principal) bool { return p.Can(auth.RoleAdmin) },
	"stamp":       func(t time.Time) template.HTML { return timeHTML(&t, "abs", t.UTC().Format("2006-01-02 15:04 MST")) },
	"stampp": func(t *time.Time) template.HTML {
		if t == nil || t.IsZero() {
			return "—"
		}
		return timeHTML(t, "abs", t.UTC().Format("2006-01-02 15:04 MST"))
	},
	// when is stamp for restic's RFC 3339 text (a snapshot's time).
	"when": func(s string) template.HTML {
		t, err := time.Parse(time.RFC3339Nano, s)
		if err != nil {
			return template.HTML(template.HTMLEscapeString(s))
		}
		return timeHTML(&t, "abs", t.UTC().Format("2006-01-02 15:04 MST"))
	},
	"cronText": describeCron,
	// Ratios in words: "0.89× dedup" meant nothing to most readers.
	"compressionText": func(r float64) string {
		if r <= 1.005 {
			return "no gain from compression (incompressible data, or a version 1 repository)"
		}
		return fmt.Sprintf("%.1f× smaller after compression", r)
	},
	"dedupText": func(r float64) string {
		if r <= 1.005 {
			return "deduplication saves nothing yet: each snapshot's data is stored about once"
		}
		return fmt.Sprintf("deduplication saves %.0f %% (all snapshots restored would need %.1f× the space)", (1-1/r)*100, r)
	},
	"mib":    func(n int64) int64 { return n >> 20 },
	"ibytes": func(n int64) string { return humanBytes(uint64(max(n, 0))) },
	// rate and seconds show a drill's restore rate and its estimated
	// full-restore time (RTO).
	"rate":    func(bps float64) string { return humanBytes(uint64(bps)) + "/s" },
	"seconds": humanSeconds,
	"join":    strings.Join,
	// sourceOf names the source a snapshot's tags mark it a dump of.
	"sourceOf": wire.SourceOfTags,
	"list":     func(s ...string) []string { return s },
	"duration": func(a, b time.Time) string {
		if a.IsZero() || b.IsZero() {
			return ""
		}
		return b.Sub(a).Round(time.Second).String()
	},
}).ParseFS(webFS, "web/templates/*.html"))

// timeHTML is a <time> element for t with the server's text (class rel:
// a relative age; abs: an exact time), or "never" for no time.
func timeHTML(t *time.Time, class, text string) template.HTML {
	if t == nil || t.IsZero() {
		return "never"
	}
	return template.HTML(`<time datetime="` + t.UTC().Format(time.RFC3339) + `" class="` + class + `" title="` +
		t.UTC().Format("2006-01-02 15:04:05 MST") + `">` + template.HTMLEscapeString(text) + `</time>`)
}

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

// Options configure the pages.
type Options struct {
	Fleet  *fleet.Fleet
	Auth   *auth.Auth
	Logger *slog.Logger
	// Policies are read for the policy pages (changed through the API).
	Policies *policy.Policies
	// LoginLimit rate-limits the login form (shared with the API's login).
	LoginLimit func(http.Handler) http.Handler
	// Compliance gives the dashboard the fleet's RPO totals (ok false:
	// no policy sets an RPO); nil shows none.
	Compliance ComplianceTotals
}

// Server serves the pages.
type Server struct {
	fleet    *fleet.Fleet
	auth     *auth.Auth
	store    *storage.Store
	policies *policy.Policies
	log      *slog.Logger
	limit    func(http.Handler) http.Handler

	compliance ComplianceTotals
}

// New builds the pages.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LoginLimit == nil {
		opts.LoginLimit = func(h http.Handler) http.Handler { return h }
	}
	return &Server{fleet: opts.Fleet, auth: opts.Auth, store: opts.Fleet.Store(), policies: opts.Policies, log: opts.Logger.With("component", "ui"), limit: opts.LoginLimit,
		compliance: opts.Compliance}
}

// Mount adds the pages and their assets to r. Every page needs a login;
// what a role may do on a page is the API's decision (the pages' controls
// call it), and pages only hide the controls a role cannot use.
func (s *Server) Mount(r chi.Router) {
	static, _ := fs.Sub(webFS, "web/static")
	r.Handle("/static/*", http.StripPrefix("/static/", http.FileServerFS(static)))
	r.Get("/login", s.pageLogin)
	r.With(s.limit).Post("/login", s.formLogin)
	r.With(s.limit).Post("/login/second-factor", s.formSecondFactor)
	r.Post("/logout", func(w http.ResponseWriter, r *http.Request) {
		s.auth.EndSession(w, r)
		http.Redirect(w, r, "/login", http.StatusSeeOther)
	})
	r.Group(func(r chi.Router) {
		r.Use(s.auth.RequireAuth(false))
		r.Get("/", s.dashboardHandler(&fleetCache{}))
		r.Get("/hosts/{id}", s.pageHost)
		r.Get("/jobs/{id}", s.pageJob)
		r.Get("/repos/{id}", s.pageRepo)
		r.Get("/restore", s.pageRestore)
		r.Get("/settings", s.pageSettings)
		r.Get(auth.EnrolPage, s.pageSecondFactor)
		r.Get(auth.EnrolPage+"/qr.png", s.secondFactorQR)
		r.Get("/alerts", s.pageAlerts)
		r.Get("/policies", s.pagePolicies)
		r.Get("/policies/new", s.pagePolicyNew)
		r.Get("/policies/{id}", s.pagePolicy)
		r.Get("/repos", s.pageRepos)
		r.Get("/integrations", s.pageIntegrations)
		r.Get("/audit", s.pageAudit)
		// A read-only helper for the schedule editor's live preview; it
		// changes nothing, so every role may call it.
		r.Get("/ui/cron", s.uiCronPreview)
	})
}

func (s *Server) render(w http.ResponseWriter, name string, data any) {
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	if err := templates.ExecuteTemplate(w, name, data); err != nil {
		s.log.Error("render", "template", name, "error", err)
	}
}

// pageError renders a page-level error in words, with the status code.
func (s *Server) pageError(w http.ResponseWriter, r *http.Request, err error) {
	p, _ := auth.From(r.Context())
	code, msg := http.StatusInternalServerError, "Something went wrong on the server; the log has the details. Try again, or report it if it keeps happening."
	in, isInput := input.As(err)
	switch {
	case isInput:
		code, msg = http.StatusBadRequest, in
	case errors.Is(err, storage.ErrNotFound):
		code, msg = http.StatusNotFound, "This item does not exist (any more). Go back to the fleet and pick it again."
	case errors.Is(err, errForbiddenPage):
		code, msg = http.StatusForbidden, "Your role cannot open this page. Ask an administrator if you need it."
	case errors.Is(err, storage.ErrInvalid):
		code, msg = http.StatusBadRequest, err.Error()
	default:
		s.log.Error("page failed", "path", r.URL.Path, "error", err)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := templates.ExecuteTemplate(w, "error.html", map[string]any{"User": p, "Message": msg, "Code": code}); err != nil {
		s.log.Error("render", "template", "error.html", "error", err)
	}
}

var errForbiddenPage = errors.New("forbidden")

func (s *Server) pageLogin(w http.ResponseWriter, r *http.Request) {
	s.render(w, "login.html", s.loginData(""))
}

func (s *Server) formLogin(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	u, err := s.auth.Login(r, r.PostForm.Get("username"), r.PostForm.Get("password"))
	if errors.Is(err, auth.ErrSecondFactorRequired) {
		// The password was right: the second step asks for the code.
		s.auth.BeginSecondFactor(w, u.Name)
		data := s.loginData("")
		data["Step"] = "code"
		s.render(w, "login.html", data)
		return
	}
	if err != nil {
		msg, code := loginFailure(err)
		w.WriteHeader(code)
		s.render(w, "login.html", s.loginData(msg))
		return
	}
	if err := s.auth.StartSession(w, u.Name); err != nil {
		httpx.Fail(s.log, w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
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
func (s *Server) pageAlerts(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	alerts, err := s.store.ListAlerts(true)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	sort.SliceStable(alerts, func(i, j int) bool {
		if (alerts[i].State == storage.AlertFiring) != (alerts[j].State == storage.AlertFiring) {
			return alerts[i].State == storage.AlertFiring
		}
		return alerts[i].Since.After(alerts[j].Since)
	})
	s.render(w, "alerts.html", map[string]any{"User": p, "Alerts": alerts})
}
