// Package metrics is the console's Prometheus endpoint: counters of what
// ingest and the job lifecycle see, and gauges of the fleet read from the
// store at scrape time.
package metrics

import (
	"context"
	"encoding/json"
	"net/http"
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

// Attach reads the fleet's gauges from f at scrape time and counts every
// job that ends.
func (m *Metrics) Attach(f *fleet.Fleet) {
	m.reg.MustRegister(&fleetCollector{f: f})
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

// fleetCollector reads the fleet's state from the store at scrape time.
type fleetCollector struct{ f *fleet.Fleet }

func (f *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastSuccess, descLastStatus, descOnline, descConnected, descRepoSize, descRepoSnaps, descAlerts, descStoreSize, descHostState} {
		ch <- d
	}
}

func (f *fleetCollector) Collect(ch chan<- prometheus.Metric) {
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
		ch <- prometheus.MustNewConstMetric(descOnline, prometheus.GaugeValue, online, h.ID)
		if h.LastSuccess != nil {
			ch <- prometheus.MustNewConstMetric(descLastSuccess, prometheus.GaugeValue, float64(h.LastSuccess.EndedAt.Unix()), h.ID, h.Name)
		}
		if h.LastBackup != nil {
			ch <- prometheus.MustNewConstMetric(descLastStatus, prometheus.GaugeValue, 1, h.ID, h.LastBackup.Status)
		}
	})
	ch <- prometheus.MustNewConstMetric(descConnected, prometheus.GaugeValue, float64(connected))
	for state, n := range states {
		ch <- prometheus.MustNewConstMetric(descHostState, prometheus.GaugeValue, float64(n), state)
	}
	if repos, err := st.ListRepos(); err == nil {
		for _, r := range repos {
			if r.Health == nil {
				continue
			}
			ch <- prometheus.MustNewConstMetric(descRepoSize, prometheus.GaugeValue, float64(r.Health.SizeBytes), r.ID, r.Name)
			ch <- prometheus.MustNewConstMetric(descRepoSnaps, prometheus.GaugeValue, float64(r.Health.SnapshotCount), r.ID, r.Name)
		}
	}
	counts := map[string]int{"warning": 0, "critical": 0}
	if alerts, err := st.ListAlerts(false); err == nil {
		for _, a := range alerts {
			counts[a.Severity]++
		}
	}
	for sev, n := range counts {
		ch <- prometheus.MustNewConstMetric(descAlerts, prometheus.GaugeValue, float64(n), sev)
	}
	ch <- prometheus.MustNewConstMetric(descStoreSize, prometheus.GaugeValue, float64(st.Size()))
}
