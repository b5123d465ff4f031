// Package metrics is the console's Prometheus endpoint: counters of what
// ingest and the job lifecycle see, and gauges of the fleet read from the
// store, at most once per refresh interval whatever the number of scrapes.
package metrics

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
)

// Metrics are the console's own instruments; per-host and per-repository
// gauges are read from the store at scrape time by fleetCollector. It
// implements fleet.Instruments.
type Metrics struct {
	reg       *prometheus.Registry
	jobs      *prometheus.CounterVec
	duration  *prometheus.HistogramVec
	added     prometheus.Counter
	ingested  *prometheus.CounterVec
	rejected  prometheus.Counter
	firesSeen *prometheus.CounterVec
	limited   *prometheus.CounterVec
	fleet     *fleetCollector // set by Attach
}

// New makes the instruments; Attach adds the fleet's gauges.
func New() *Metrics {
	m := &Metrics{
		reg: prometheus.NewRegistry(),
		jobs: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "restic_manager_jobs_total",
			Help: "Jobs that ended, by kind and status."}, []string{"kind", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{Name: "restic_manager_job_duration_seconds",
			Help: "Run time of jobs that ended, by kind.", Buckets: prometheus.ExponentialBuckets(1, 4, 9)}, []string{"kind"}),
		added: prometheus.NewCounter(prometheus.CounterOpts{Name: "restic_manager_backup_bytes_added_total",
			Help: "Bytes added to repositories by backups (restic's data_added)."}),
		ingested: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "restic_manager_mqtt_messages_ingested_total",
			Help: "Agent messages stored, by topic kind."}, []string{"kind"}),
		rejected: prometheus.NewCounter(prometheus.CounterOpts{Name: "restic_manager_mqtt_messages_rejected_total",
			Help: "Agent messages refused (malformed, unknown job, foreign topic)."}),
		firesSeen: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "restic_manager_schedule_fires_total",
			Help: "Schedule fires, by outcome."}, []string{"outcome"}),
		limited: prometheus.NewCounterVec(prometheus.CounterOpts{Name: "restic_manager_mqtt_clients_rate_limited_total",
			Help: "MQTT clients the embedded broker disconnected for going past a rate limit, by role (agent, integration) and limit (messages, bytes)."}, []string{"role", "limit"}),
	}
	m.reg.MustRegister(m.jobs, m.duration, m.added, m.ingested, m.rejected, m.firesSeen, m.limited,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// DefaultRefresh is how long the fleet's gauges are served from the last
// read of the store. Reading them walks every host, repository and alert,
// and /metrics may be open to anyone who can reach the console: a scraper
// (or anyone) asking in a loop must not turn into store scans in a loop.
// Prometheus scrapes every 15 to 60 s, so its figures are at most one
// refresh late.
const DefaultRefresh = 15 * time.Second

// Attach reads the fleet's gauges from f, at most once per refresh (zero
// means DefaultRefresh, negative reads the store at every scrape), and
// counts every job that ends.
func (m *Metrics) Attach(f *fleet.Fleet, refresh time.Duration) {
	if refresh == 0 {
		refresh = DefaultRefresh
	}
	m.fleet = &fleetCollector{f: f, refresh: refresh, now: time.Now}
	m.reg.MustRegister(m.fleet)
	f.OnJobEnd(m.jobEnded)
}

// Ingested, Rejected and Fire count ingest (fleet.Instruments).
func (m *Metrics) Ingested(kind string) { m.ingested.WithLabelValues(kind).Inc() }
func (m *Metrics) Rejected()            { m.rejected.Inc() }
func (m *Metrics) Fire(outcome string)  { m.firesSeen.WithLabelValues(outcome).Inc() }

// RateLimited counts a client the broker cut off (broker.Options.OnRateLimited).
func (m *Metrics) RateLimited(role, limit string) { m.limited.WithLabelValues(role, limit).Inc() }

// jobEnded counts a finished job.
func (m *Metrics) jobEnded(j storage.Job) {
	m.jobs.WithLabelValues(j.Kind, j.Status).Inc()
	if !j.StartedAt.IsZero() && j.EndedAt.After(j.StartedAt) {
		m.duration.WithLabelValues(j.Kind).Observe(j.EndedAt.Sub(j.StartedAt).Seconds())
	}
	var sum struct {
		DataAdded uint64 `json:"data_added"`
	}
	if json.Unmarshal(j.Summary, &sum) == nil && sum.DataAdded > 0 {
		m.added.Add(float64(sum.DataAdded))
	}
}

// Handler serves the metrics.
func (m *Metrics) Handler() http.Handler {
	return promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{Timeout: 30 * time.Second})
}

// RequireToken serves h only to requests that carry token as a bearer
// token ("Authorization: Bearer TOKEN"); an empty token lets every request
// through.
func RequireToken(token string, h http.Handler) http.Handler {
	if token == "" {
		return h
	}
	want := sha256.Sum256([]byte(token))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
		// Compare digests: constant time whatever the lengths.
		sum := sha256.Sum256([]byte(got))
		if !ok || subtle.ConstantTimeCompare(sum[:], want[:]) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="metrics"`)
			http.Error(w, "metrics need the bearer token given to the server (--metrics-token-file)", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}

var (
	descLastSuccess = prometheus.NewDesc("restic_manager_host_last_success_timestamp_seconds", "End of the host's last successful backup.", []string{"host_id", "host"}, nil)
	descLastStatus  = prometheus.NewDesc("restic_manager_host_last_backup_status", "1 for the status of the host's last backup.", []string{"host_id", "status"}, nil)
	descOnline      = prometheus.NewDesc("restic_manager_host_online", "1 when the host's agent is connected.", []string{"host_id"}, nil)
	descConnected   = prometheus.NewDesc("restic_manager_agents_connected", "Agents connected now.", nil, nil)
	descRepoSize    = prometheus.NewDesc("restic_manager_repository_size_bytes", "Repository size on disk.", []string{"repo_id", "repo"}, nil)
	descRepoSnaps   = prometheus.NewDesc("restic_manager_repository_snapshots", "Snapshots in the repository.", []string{"repo_id", "repo"}, nil)
	descAlerts      = prometheus.NewDesc("restic_manager_alerts_firing", "Alerts firing, by severity.", []string{"severity"}, nil)
	descStoreSize   = prometheus.NewDesc("restic_manager_store_size_bytes", "Size of the console's store on disk.", nil, nil)
	descHostState   = prometheus.NewDesc("restic_manager_hosts", "Hosts by state (ok, warning, failing, offline), as the dashboard counts them.", []string{"state"}, nil)
)

// fleetCollector reads the fleet's state from the store and keeps what it
// read for refresh: scrapes within that time are answered from memory.
type fleetCollector struct {
	f       *fleet.Fleet
	refresh time.Duration
	now     func() time.Time

	// mu is held during a read, so scrapes that arrive meanwhile wait for
	// it and share its figures rather than each reading the store.
	mu     sync.Mutex
	cached []prometheus.Metric
	at     time.Time
	scans  atomic.Int64 // reads of the store, for tests
}

func (f *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastSuccess, descLastStatus, descOnline, descConnected, descRepoSize, descRepoSnaps, descAlerts, descStoreSize, descHostState} {
		ch <- d
	}
}

func (f *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if now := f.now(); f.cached == nil || f.refresh < 0 || now.Sub(f.at) >= f.refresh || now.Before(f.at) {
		f.cached, f.at = f.read(), now
	}
	for _, m := range f.cached {
		ch <- m
	}
}

// read collects the fleet's gauges from the store.
func (f *fleetCollector) read() []prometheus.Metric {
	f.scans.Add(1)
	out := make([]prometheus.Metric, 0, 64)
	st := f.f.Store()
	connected := 0
	states := map[string]int{}
	for _, s := range fleet.States {
		states[s] = 0
	}
	now := time.Now()
	f.f.EachHost(context.Background(), func(h storage.Host) {
		states[f.f.AssessHost(h, now).State]++
		online := 0.0
		if h.Online {
			online, connected = 1, connected+1
		}
		out = append(out, prometheus.MustNewConstMetric(descOnline, prometheus.GaugeValue, online, h.ID))
		if h.LastSuccess != nil {
			out = append(out, prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(h.LastSuccess.EndedAt.Unix()), h.ID, h.Name))
		}
		if h.LastBackup != nil {
			out = append(out, prometheus.MustNewConstMetric(descLastStatus, prometheus.GaugeValue, 1, h.ID, h.LastBackup.Status))
		}
	})
	out = append(out, prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, float64(connected)))
	for state, n := range states {
		out = append(out, prometheus.MustNewConstMetric(descHostState, prometheus.GaugeValue, float64(n), state))
	}
	if repos, err := st.ListRepos(); err == nil {
		for _, r := range repos {
			if r.Health == nil {
				continue
			}
			out = append(out, prometheus.MustNewConstMetric(descRepoSize, prometheus.GaugeValue, float64(r.Health.SizeBytes), r.ID, r.Name))
			out = append(out, prometheus.MustNewConstMetric(descRepoSnaps, prometheus.GaugeValue, float64(r.Health.SnapshotCount), r.ID, r.Name))
		}
	}
	counts := map[string]int{"warning": 0, "critical": 0}
	if alerts, err := st.ListAlerts(false); err == nil {
		for _, a := range alerts {
			counts[a.Severity]++
		}
	}
	for sev, n := range counts {
		out = append(out, prometheus.MustNewConstMetric(descAlerts, prometheus.GaugeValue, float64(n), sev))
	}
	out = append(out, prometheus.MustNewConstMetric(descStoreSize, prometheus.GaugeValue, float64(st.Size())))
	return out
}
