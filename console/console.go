// Package console is the control plane's HTTP side and its view of the
// broker traffic: the JSON API, the web pages, login and sessions, and the
// ingest that turns agent messages into stored records.
package console

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/oklog/ulid/v2"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/storage"
)

// Publisher sends console → agent messages. The embedded broker implements
// it; so can a client of an external broker.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, expiry time.Duration) error
}

// Disconnector is implemented by a Publisher that can drop a client's
// connection (the embedded broker can; an external one may not).
type Disconnector interface {
	Disconnect(clientID string)
}

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
	Version      string
}

// Console serves HTTP and ingests agent messages.
type Console struct {
	opts  Options
	store *storage.Store
	pub   Publisher
	log   *slog.Logger

	alertState alertState
	online     onlineQueue
	metrics    *metrics
	guard      loginGuard
	health     healthJobs

	// gate keeps exclusive operations alone on their repository; held
	// lists, per repository, the jobs waiting for it in order.
	gate   *repoGate
	gateMu sync.Mutex
	held   map[string][]string

	// indexing maps repo/snapshot to its index job in flight.
	indexMu  sync.Mutex
	indexing map[string]string

	// events fans job updates out to SSE listeners and waiting pages.
	events *hub

	// bg owns background work (re-dispatching queued jobs, sweeps).
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup

	brokerSync brokerSync
}

// New builds a Console.
func New(opts Options) (*Console, error) {
	if opts.Store == nil || opts.Publisher == nil {
		return nil, fmt.Errorf("console: Store and Publisher are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CommandExpiry == 0 {
		opts.CommandExpiry = 24 * time.Hour
	}
	if opts.HealthDelay == 0 {
		opts.HealthDelay = 30 * time.Second
	}
	if opts.AlertInterval == 0 {
		opts.AlertInterval = defaultAlertInterval
	}
	if opts.RenotifyEvery == 0 {
		opts.RenotifyEvery = defaultRenotify
	}
	if opts.OfflineAfter == 0 {
		opts.OfflineAfter = defaultOfflineAfter
	}
	c := &Console{
		opts:   opts,
		store:  opts.Store,
		pub:    opts.Publisher,
		log:    opts.Logger.With("component", "console"),
		events: newHub(),
		gate:   newRepoGate(),
		held:   map[string][]string{},

		indexing: map[string]string{},
	}
	c.metrics = newMetrics(c)
	c.bgCtx, c.bgCancel = context.WithCancel(context.Background())
	c.goBG(c.sweepLoop)
	c.goBG(c.gateLoop)
	c.goBG(c.alertLoop)
	c.goBG(c.retentionLoop)
	c.startBrokerSync()
	return c, nil
}

// Close stops background work.
func (c *Console) Close() {
	c.health.mu.Lock()
	for _, t := range c.health.timers {
		t.Stop()
	}
	c.health.mu.Unlock()
	c.bgCancel()
	c.bg.Wait()
}

// go runs fn in the background, owned by the console.
func (c *Console) goBG(fn func(ctx context.Context)) {
	c.bg.Add(1)
	go func() {
		defer c.bg.Done()
		fn(c.bgCtx)
	}()
}

// EnsureAdmin creates user "admin" when there are no users. It returns the
// generated password when it made one (so the caller can print it once).
func (c *Console) EnsureAdmin(password string) (generated string, err error) {
	n, err := c.store.CountUsers()
	if err != nil || n > 0 {
		return "", err
	}
	if password == "" {
		password = randomToken(18)
		generated = password
	}
	hash, err := hashPassword(password)
	if err != nil {
		return "", err
	}
	if err := c.store.CreateUser(storage.User{Name: "admin", PasswordHash: hash, Role: RoleAdmin, CreatedAt: time.Now().UTC()}); err != nil {
		return "", err
	}
	return generated, nil
}

// newID makes a sortable, topic-safe ID such as "job-01hx…".
func newID(prefix string) string {
	return prefix + "-" + strings.ToLower(ulid.Make().String())
}

// randomToken returns n random bytes, base64url without padding.
func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func sha(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// publicURL is the console's own base URL as seen by the caller.
func (c *Console) publicURL(r *http.Request) string {
	if c.opts.PublicURL != "" {
		return strings.TrimRight(c.opts.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// brokerURL is what an enrolling agent should connect to.
func (c *Console) brokerURL(r *http.Request) string {
	if c.opts.BrokerURL != "" {
		return c.opts.BrokerURL
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	scheme := "mqtt"
	if c.opts.TLS {
		scheme = "mqtts"
	}
	return scheme + "://" + net.JoinHostPort(host, c.opts.MQTTPort)
}
