// Package api is the console's JSON API: this file is the whole table of
// routes and the least role each needs; the handlers, one file per kind of
// object, turn requests into calls on the fleet, alerts and auth, and
// answer with the view types of console/view (never storage records).
package api

import (
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/httprate"

	"github.com/restic-manager/restic-manager/console/alerts"
	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/enrol"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/policy"
	"github.com/restic-manager/restic-manager/console/report"
	"github.com/restic-manager/restic-manager/console/repos"
	"github.com/restic-manager/restic-manager/storage"
)

// Options configure the API.
type Options struct {
	Fleet    *fleet.Fleet
	Repos    *repos.Repos
	Enrol    *enrol.Enrol
	Policies *policy.Policies
	Auth     *auth.Auth
	Alerts   *alerts.Alerts
	Metrics  http.Handler
	Logger   *slog.Logger
	// LoginLimit rate-limits logins (shared with the login form).
	LoginLimit func(http.Handler) http.Handler
	// PublicURL is how agents and browsers reach the console; empty means
	// derive it from each request.
	PublicURL string
	// BrokerURL is what enrolled agents connect to; when empty it is derived
	// from the request host and MQTTPort.
	BrokerURL string
	MQTTPort  string
	// TLS: the broker speaks MQTT over TLS (agents get mqtts:// URLs).
	TLS bool
	// CAFingerprint is the CA agents pin, given in the enrolment command.
	CAFingerprint string
	// DownloadsDir holds agent binaries served at /downloads/ (optional).
	DownloadsDir string
	// CAPEM is the generated CA, served at /ca.pem for install scripts.
	CAPEM []byte
	// EnrollPerMinute caps enrolments per client IP and minute (default 30;
	// negative means no cap).
	EnrollPerMinute int
	// SSEPerUser and SSETotal cap the job event streams open at once, per
	// user and in all (defaults DefaultSSEPerUser, DefaultSSETotal); past
	// them a stream is refused with 429.
	SSEPerUser, SSETotal int
	// Reports makes the compliance report (console wiring shares it with
	// the pages' totals).
	Reports *report.Reporter
}

// Server serves the API.
type Server struct {
	opts     Options
	fleet    *fleet.Fleet
	repos    *repos.Repos
	enrol    *enrol.Enrol
	policies *policy.Policies
	auth     *auth.Auth
	alerts   *alerts.Alerts
	store    *storage.Store
	log      *slog.Logger
	sse      *sseSlots
	dumps    dumpRelay // downloads meeting their agents' streams (download.go)
}

// New builds the API.
func New(opts Options) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.LoginLimit == nil {
		opts.LoginLimit = httprate.LimitBy(10, time.Minute, httpx.RemoteIP)
	}
	if opts.SSEPerUser <= 0 {
		opts.SSEPerUser = DefaultSSEPerUser
	}
	if opts.SSETotal <= 0 {
		opts.SSETotal = DefaultSSETotal
	}
	return &Server{opts: opts, fleet: opts.Fleet, repos: opts.Repos, enrol: opts.Enrol, policies: opts.Policies, auth: opts.Auth, alerts: opts.Alerts, store: opts.Fleet.Store(),
		log: opts.Logger.With("component", "api"),
		sse: &sseSlots{perUser: opts.SSEPerUser, total: opts.SSETotal, users: map[string]int{}}}
}

// Mount adds the API, /healthz, /metrics and the downloads to r. ready
// reports whether the broker and HTTP are up (for /healthz).
func (s *Server) Mount(r chi.Router, ready func() bool) {
	// 503 while starting, and once the store has failed (closed, a failed
	// sync, unreadable): the console can then neither ingest nor answer.
	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			httpx.WriteError(w, http.StatusServiceUnavailable, "starting")
			return
		}
		if err := s.store.Check(); err != nil {
			httpx.WriteError(w, http.StatusServiceUnavailable, err.Error())
			return
		}
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	// Prometheus scrapes without a session: the handler checks its own
	// bearer token when the server has one (--metrics-token-file). The
	// figures name hosts and repositories but hold no secret.
	if s.opts.Metrics != nil {
		r.Handle("/metrics", s.opts.Metrics)
	}
	r.Route("/api/v1", s.routes)
	s.mountDownloads(r.With(streaming))
}

// streamIdle is how long a long response (the store backup, an agent
// binary) may go without writing anything.
const streamIdle = time.Minute

// streaming lets a response take as long as it needs, as long as it keeps
// moving: the server's write timeout (which bounds a whole response) is
// replaced by a deadline of streamIdle renewed at every write.
func streaming(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		_ = rc.SetWriteDeadline(time.Now().Add(streamIdle))
		next.ServeHTTP(&movingWriter{ResponseWriter: w, rc: rc}, r)
	})
}

// movingWriter renews the write deadline before each write.
type movingWriter struct {
	http.ResponseWriter
	rc *http.ResponseController
}

func (m *movingWriter) Write(p []byte) (int, error) {
	_ = m.rc.SetWriteDeadline(time.Now().Add(streamIdle))
	return m.ResponseWriter.Write(p)
}

// Unwrap lets http.ResponseController reach the connection.
func (m *movingWriter) Unwrap() http.ResponseWriter { return m.ResponseWriter }

// routes is the table: every API route and the least role it needs.
func (s *Server) routes(r chi.Router) {
	r.With(s.opts.LoginLimit).Post("/login", s.login)
	r.Post("/logout", s.logout)
	// Agents enrol with their one-time token or an enrolment key, not a
	// user login.
	enroll := r.With()
	if n := s.opts.EnrollPerMinute; n >= 0 {
		if n == 0 {
			n = 30
		}
		enroll = r.With(httprate.LimitBy(n, time.Minute, httpx.RemoteIP))
	}
	enroll.Post("/enroll", s.enroll)
	// Sign-in with the OpenID provider: the browser comes and goes by
	// redirects; each finished sign-in costs as much of the login budget
	// as a password.
	r.Get("/auth/oidc/login", s.oidcLogin)
	r.With(s.opts.LoginLimit).Get("/auth/oidc/callback", s.oidcCallback)
	// An agent sends a download's bytes with its own credential (download.go).
	r.With(streaming).Post("/agent/dumps/{job}", s.agentDumpUpload)

	r.Group(func(r chi.Router) {
		r.Use(s.auth.RequireAuth(true))
		r.Use(s.auth.Audit)
		// Every role reads.
		r.Get("/hosts", s.listHosts)
		r.Get("/hosts/{id}", s.getHost)
		r.Get("/hosts/{id}/schedules", s.getSchedules)
		r.Get("/hosts/{id}/drills", s.hostDrills)
		r.Get("/repos", s.listRepos)
		r.Get("/repos/{id}", s.getRepo)
		r.Get("/repos/{id}/snapshots", s.repoSnapshots)
		r.Get("/repos/{id}/snapshots/{sid}/ls", s.snapshotLs)
		r.Get("/repos/{id}/snapshots/{sid}/index", s.snapshotIndex)
		r.Get("/repos/{id}/snapshots/{sid}/size", s.snapshotDownloadInfo)
		r.Get("/jobs", s.listJobs)
		r.Get("/jobs/{id}", s.getJob)
		r.Get("/jobs/{id}/events", s.jobEvents)
		r.Get("/jobs/{id}/changes", s.jobChanges)
		r.Get("/alerts", s.listAlerts)
		r.Get("/policies", s.listPolicies)
		r.Get("/policies/preview", s.previewPolicy)
		r.Get("/policies/{id}", s.getPolicy)
		r.Get("/reports/compliance", s.complianceReport)
		r.Get("/tokens", s.listTokens)
		r.Post("/tokens", s.createToken)
		r.Delete("/tokens/{id}", s.deleteToken)
		// Everyone's own account and second factor.
		r.Get("/me", s.me)
		r.With(s.opts.LoginLimit).Post("/me/totp", s.enrolTOTP)
		r.With(s.opts.LoginLimit).Post("/me/totp/confirm", s.confirmTOTP)

		// Operators run the fleet.
		r.Group(func(r chi.Router) {
			r.Use(auth.RequireRole(auth.RoleOperator))
			r.Post("/hosts", s.createHost)
			r.Post("/hosts/{id}/enroll-token", s.newEnrollToken)
			r.Post("/hosts/{id}/jobs", s.createJob)
			r.Post("/jobs/bulk", s.createBulkJobs)
			r.Post("/jobs/{id}/cancel", s.cancelJob)
			r.Post("/restores", s.restore)
			// Bytes leave the backups: audited by the handler (download.go).
			r.With(streaming).Get("/repos/{id}/snapshots/{sid}/download", s.snapshotDownload)
			r.Put("/hosts/{id}/schedules", s.putSchedules)
			r.Post("/repos/{id}/snapshots/{sid}/index", s.startIndex)
			r.Post("/repos/{id}/test", s.testRepo)
			r.Post("/repos/{id}/forget-preview", s.forgetPreview)
			r.Patch("/hosts/{id}", s.patchHost)
			r.Post("/alerts/{id}/ack", s.ackAlert)
			r.Post("/alerts/{id}/silence", s.silenceAlert)
		})

		// Admins manage access and the console itself.
		r.Group(func(r chi.Router) {
			r.Use(auth.RequireRole(auth.RoleAdmin))
			r.Post("/hosts/{id}/revoke", s.revokeHost)
			// Policies bind their hosts to a repository: an admin's.
			r.Post("/policies", s.createPolicy)
			r.Put("/policies/{id}", s.putPolicy)
			r.Delete("/policies/{id}", s.deletePolicy)
			// A forget its guard held deletes only with an admin's word.
			r.Post("/jobs/{id}/approve", s.approveJob)
			// Repository secrets and who may receive them widen trust.
			r.Post("/repos", s.createRepo)
			r.Patch("/repos/{id}", s.patchRepo)
			r.Delete("/repos/{id}", s.deleteRepo)
			// The password every agent opens the repository with.
			r.Post("/repos/{id}/rotate-password", s.rotateRepoPassword)
			r.Delete("/hosts/{id}", s.deleteHost)
			// An enrolment key adds hosts by itself: it widens the fleet.
			r.Get("/enroll-keys", s.listEnrollKeys)
			r.Post("/enroll-keys", s.createEnrollKey)
			r.Delete("/enroll-keys/{id}", s.deleteEnrollKey)
			r.Get("/users", s.listUsers)
			r.Post("/users", s.createUser)
			r.Patch("/users/{name}", s.patchUser)
			r.Delete("/users/{name}", s.deleteUser)
			r.Delete("/users/{name}/totp", s.resetTOTP)
			r.Get("/settings/sign-in", s.getSignInSettings)
			r.Put("/settings/sign-in", s.putSignInSettings)
			r.Get("/audit", s.listAudit)
			r.With(streaming).Post("/admin/backup", s.backupStore)
			r.Get("/channels", s.listChannels)
			r.Post("/channels", s.createChannel)
			r.Patch("/channels/{id}", s.patchChannel)
			r.Delete("/channels/{id}", s.deleteChannel)
			r.Post("/channels/{id}/test", s.testChannel)
			r.Get("/mqtt-users", s.listMQTTUsers)
			r.Post("/mqtt-users", s.createMQTTUser)
			r.Delete("/mqtt-users/{name}", s.deleteMQTTUser)
			r.Get("/settings", s.getSettings)
			r.Put("/settings", s.putSettings)
		})
	})
}

// fail answers an error (see httpx.Fail).
func (s *Server) fail(w http.ResponseWriter, r *http.Request, err error) {
	httpx.Fail(s.log, w, r, err)
}

// who is the request's principal (set by RequireAuth).
func who(r *http.Request) auth.Principal {
	p, _ := auth.From(r.Context())
	return p
}
