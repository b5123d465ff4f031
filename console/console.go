// Package console is the control plane's web side and its view of the
// broker traffic. It only wires its parts together (docs/architecture.md
// follows a job through them):
//
//   - fleet: the job lifecycle, ingest of what agents send, repository
//     health, schedules and enrolment (no HTTP);
//   - repos: repository records and access lists, their health, snapshot
//     lists and indexes, observing the fleet;
//   - policy: policies (label selectors, schedules, a repository) and
//     their rollout;
//   - enrol: hosts joining (token or key) and leaving, credentials,
//     integration accounts, an external broker's accounts;
//   - drills: restore drills' arguments, their outcome on the host they
//     prove, and their cadence;
//   - copies: the copy after a policy's backups, each repository's copy
//     lag against its destinations;
//   - report: the RPO compliance report (and the RPO each host's state is
//     judged by);
//   - alerts: rules, notifications, MQTT health, Home Assistant discovery,
//     observing the fleet;
//   - auth: users, sessions, tokens, roles, second factors, sign-in
//     with an OpenID provider and the audit log;
//   - metrics: the Prometheus endpoint;
//   - api and ui: the JSON API and the pages, over the three above.
package console

import (
	"context"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/console/alerts"
	"github.com/restic-manager/restic-manager/console/api"
	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/copies"
	"github.com/restic-manager/restic-manager/console/daystats"
	"github.com/restic-manager/restic-manager/console/drills"
	"github.com/restic-manager/restic-manager/console/enrol"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/metrics"
	"github.com/restic-manager/restic-manager/console/policy"
	"github.com/restic-manager/restic-manager/console/report"
	"github.com/restic-manager/restic-manager/console/repos"
	"github.com/restic-manager/restic-manager/console/ui"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Defaults of Options.SSEPerUser and SSETotal.
const (
	DefaultSSEPerUser = api.DefaultSSEPerUser
	DefaultSSETotal   = api.DefaultSSETotal
)

// Publisher sends console → agent messages: the embedded broker, or the
// client of an external one.
type Publisher = fleet.Publisher

// Options configure a Console.
type Options struct {
	Store     *storage.Store
	Publisher Publisher
	Logger    *slog.Logger
	// PublicURL is how agents and browsers reach the console; empty means
	// derive it from each request.
	PublicURL string
	// BrokerURL is what enrolled agents connect to; when empty it is derived
	// from the request host and MQTTPort.
	BrokerURL string
	MQTTPort  string
	// SecureCookies marks session cookies Secure (set when serving HTTPS).
	SecureCookies bool
	// TLS: the broker speaks MQTT over TLS (agents get mqtts:// URLs).
	TLS bool
	// CAFingerprint is the CA agents pin, given in the enrolment command.
	CAFingerprint string
	// DownloadsDir holds agent binaries served at /downloads/ (optional).
	DownloadsDir string
	// CAPEM is the generated CA, served at /ca.pem for install scripts.
	CAPEM []byte
	// HealthDelay: a repository's health is refreshed once it has been
	// quiet this long after a change (default 30s).
	HealthDelay time.Duration
	// AlertInterval is how often the periodic alert rules run (default 30s);
	// RenotifyEvery repeats a firing, unacknowledged alert (default 4h);
	// OfflineAfter is how long a host may be offline before it alerts (1h).
	AlertInterval, RenotifyEvery, OfflineAfter time.Duration
	// CommandExpiry bounds how long a command waits for an offline agent.
	CommandExpiry time.Duration
	// BrokerAccounts, when set (external broker mode), receives every
	// broker login after each credential change: the agents' and
	// integrations' password hashes. The caller adds its own login and
	// writes the broker's files.
	BrokerAccounts func([]broker.Account) error
	// EnrollPerMinute caps enrolments per client IP and minute (default 30;
	// negative means no cap). A rollout behind one NAT or a fleet simulator
	// needs more.
	EnrollPerMinute int
	// JobRetention is how long finished jobs (with their output) are kept
	// (default 180 days; negative keeps them forever). Unfinished jobs and
	// each host's last job, backup and success are never deleted.
	JobRetention time.Duration
	// MetricsRefresh: the fleet's gauges in /metrics are read from the
	// store at most this often (default metrics.DefaultRefresh; negative:
	// at every scrape).
	MetricsRefresh time.Duration
	// MetricsToken, when set, is the bearer token /metrics requires.
	// Without it /metrics is open to anyone who reaches the console.
	MetricsToken string
	// MetricsElsewhere: /metrics is not on the console's own router; the
	// caller serves MetricsHandler on a listener of its own.
	MetricsElsewhere bool
	// SSEPerUser and SSETotal cap the job event streams open at once
	// (defaults DefaultSSEPerUser, DefaultSSETotal).
	SSEPerUser, SSETotal int
	Version              string
	// LoginPerMinute caps logins (password, second factor, OpenID
	// callback) per client address and minute (default 10).
	LoginPerMinute int
	// OIDC, when set, lets people sign in with an OpenID provider;
	// LocalLoginOff leaves password sign-in to BreakGlassUser alone.
	OIDC           *auth.OIDCConfig
	LocalLoginOff  bool
	BreakGlassUser string
}

// Console is the wired control plane: it serves HTTP and, for the broker,
// authenticates agents and ingests their messages.
type Console struct {
	opts     Options
	fleet    *fleet.Fleet
	repos    *repos.Repos
	enrol    *enrol.Enrol
	policies *policy.Policies
	alerts   *alerts.Alerts
	auth     *auth.Auth
	metrics  *metrics.Metrics
	daystats *daystats.Counter
	api      *api.Server
	ui       *ui.Server
}

var (
	_ broker.Authenticator = (*Console)(nil)
	_ broker.Ingestor      = (*Console)(nil)
	_ broker.BirthListener = (*Console)(nil)
)

// New builds a Console and starts its background work; Close stops it.
func New(opts Options) (*Console, error) {
	if opts.Store == nil || opts.Publisher == nil {
		return nil, fmt.Errorf("console: Store and Publisher are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	c := &Console{opts: opts, metrics: metrics.New()}
	c.auth = auth.New(auth.Options{Store: opts.Store, Logger: opts.Logger, SecureCookies: opts.SecureCookies,
		OIDC: opts.OIDC, LocalLoginOff: opts.LocalLoginOff, BreakGlassUser: opts.BreakGlassUser})
	f, err := fleet.New(fleet.Options{
		Store: opts.Store, Publisher: opts.Publisher, Logger: opts.Logger,
		CommandExpiry: opts.CommandExpiry, OfflineAfter: opts.OfflineAfter,
		JobRetention: opts.JobRetention, Instruments: c.metrics,
	})
	if err != nil {
		return nil, err
	}
	c.fleet = f
	c.enrol = enrol.New(enrol.Options{Fleet: f, Logger: opts.Logger, BrokerAccounts: opts.BrokerAccounts})
	// Repositories observe a job's end right after the fleet's gate.
	c.repos = repos.New(repos.Options{Fleet: f, Logger: opts.Logger, HealthDelay: opts.HealthDelay})
	if c.policies, err = policy.New(policy.Options{Fleet: f, Repos: c.repos, Logger: opts.Logger}); err != nil {
		c.repos.Close()
		c.enrol.Close()
		f.Close()
		return nil, err
	}
	// Drills record their outcome on the host they prove before the
	// alerts (registered after) read it.
	drills.New(f, opts.Logger)
	// Copies read the snapshot lists repos cached (registered before) and
	// make the copies policies ask for after backups.
	copies.New(f, c.policies, opts.Logger)
	// The dashboard's charts count backups per day as they end.
	c.daystats = daystats.New(f, opts.Logger)
	// A policy's RPO is the host's staleness threshold (rpo_breach), judged
	// as the compliance report judges it.
	reports := report.New(opts.Store, c.policies.List)
	f.SetRPO(reports.HostRPO)
	c.metrics.Attach(f, opts.MetricsRefresh)
	c.alerts = alerts.New(alerts.Options{Fleet: f, Logger: opts.Logger, PublicURL: opts.PublicURL,
		Interval: opts.AlertInterval, RenotifyEvery: opts.RenotifyEvery, Audit: c.auth.Record})
	// One budget for every way to log in: 10 a minute per address.
	loginRate := opts.LoginPerMinute
	if loginRate <= 0 {
		loginRate = 10
	}
	loginLimit := httprate.LimitBy(loginRate, time.Minute, httpx.RemoteIP)
	var metricsOnRouter http.Handler
	if !opts.MetricsElsewhere {
		metricsOnRouter = c.MetricsHandler()
	}
	c.api = api.New(api.Options{
		Fleet: f, Repos: c.repos, Enrol: c.enrol, Policies: c.policies, Auth: c.auth, Alerts: c.alerts, Metrics: metricsOnRouter, Logger: opts.Logger, LoginLimit: loginLimit,
		PublicURL: opts.PublicURL, BrokerURL: opts.BrokerURL, MQTTPort: opts.MQTTPort, TLS: opts.TLS,
		CAFingerprint: opts.CAFingerprint, DownloadsDir: opts.DownloadsDir, CAPEM: opts.CAPEM,
		EnrollPerMinute: opts.EnrollPerMinute, SSEPerUser: opts.SSEPerUser, SSETotal: opts.SSETotal,
		Reports: reports,
	})
	c.ui = ui.New(ui.Options{Fleet: f, Auth: c.auth, Policies: c.policies, Logger: opts.Logger, LoginLimit: loginLimit, Compliance: reports.Totals})
	return c, nil
}

// Close stops background work: the alerts first (they observe the fleet).
func (c *Console) Close() {
	c.alerts.Close()
	c.daystats.Close()
	c.repos.Close()
	c.enrol.Close()
	c.fleet.Close()
}

// Handler returns the console's HTTP handler. ready reports whether the
// broker and store are up (for /healthz).
func (c *Console) Handler(ready func() bool) http.Handler {
	// Go's cross-origin protection refuses state-changing requests that a
	// browser marks as cross-site (Sec-Fetch-Site / Origin): CSRF protection
	// for every form and cookie-authenticated API call, with no token to leak.
	return http.NewCrossOriginProtection().Handler(c.router(ready))
}

func (c *Console) router(ready func() bool) chi.Router {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(httpx.SecurityHeaders)
	c.api.Mount(r, ready)
	c.ui.Mount(r)
	return r
}

// EnsureAdmin creates user "admin" when there are no users. It returns the
// generated password when it made one (so the caller can print it once).
func (c *Console) EnsureAdmin(password string) (string, error) { return c.auth.EnsureAdmin(password) }

// Ingest stores one agent message before the broker acknowledges it.
func (c *Console) Ingest(ctx context.Context, host string, t wire.Topic, payload []byte) error {
	return c.fleet.Ingest(ctx, host, t, payload)
}

// AuthenticateHost checks an agent's MQTT credential.
func (c *Console) AuthenticateHost(hostID string, password []byte) bool {
	return c.enrol.AuthenticateHost(hostID, password)
}

// AuthenticateIntegration checks a read-only MQTT account.
func (c *Console) AuthenticateIntegration(user string, password []byte) bool {
	return c.enrol.AuthenticateIntegration(user, password)
}

// HomeAssistantOnline republishes discovery when Home Assistant (re)starts.
func (c *Console) HomeAssistantOnline() { c.alerts.HomeAssistantOnline() }

// MetricsHandler serves /metrics, behind the bearer token when one is set.
func (c *Console) MetricsHandler() http.Handler {
	return metrics.RequireToken(c.opts.MetricsToken, c.metrics.Handler())
}

// RateLimited counts a client the embedded broker disconnected for going
// past its rate limit (broker.Options.OnRateLimited).
func (c *Console) RateLimited(role, limit string) { c.metrics.RateLimited(role, limit) }

// BrokerServing is called once the broker (embedded or external) carries
// the console's messages: the console republishes every host's desired
// schedules, which the embedded broker keeps in memory only, in the
// background (about a second per 10,000 hosts).
func (c *Console) BrokerServing() {
	c.fleet.Background(func(ctx context.Context) {
		start := time.Now()
		n, err := c.fleet.RepublishDesired(ctx)
		if err != nil && ctx.Err() == nil {
			c.opts.Logger.Warn("desired schedules not all republished", "published", n, "error", err)
			return
		}
		c.opts.Logger.Info("desired schedules republished", "hosts", n, "took", time.Since(start).Round(time.Millisecond))
	})
}
