// Command restic-manager is the control plane: the embedded MQTT broker, the
// web console and its store, in one process.
package main

import (
	"context"
	"crypto/tls"
	"flag"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/console"
	"github.com/restic-manager/restic-manager/internal/cli"
	"github.com/restic-manager/restic-manager/internal/tlsutil"
	"github.com/restic-manager/restic-manager/storage"
)

const usage = `restic-manager: the control plane of a restic backup fleet

Usage:
  restic-manager server --data DIR --http ADDR --mqtt ADDR [--insecure] [flags]
  restic-manager backup-store FILE [--server URL] [--token TOKEN] [--data DIR]
  restic-manager restore-store FILE --data DIR --master-key FILE [--tls DIR]
  restic-manager version

Run "restic-manager server -h" for the server's flags.
`

func main() {
	if len(os.Args) < 2 {
		fmt.Fprint(os.Stderr, usage)
		os.Exit(2)
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = runServer(os.Args[2:])
	case "backup-store":
		err = runBackupStore(os.Args[2:])
	case "restore-store":
		err = runRestoreStore(os.Args[2:])
	case "version", "--version":
		fmt.Println("restic-manager", cli.Version)
	case "help", "-h", "--help":
		fmt.Print(usage)
	default:
		fmt.Fprintf(os.Stderr, "restic-manager: unknown command %q\n\n%s", os.Args[1], usage)
		os.Exit(2)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "restic-manager:", err)
		os.Exit(1)
	}
}

type serverFlags struct {
	data, httpAddr, mqttAddr, mqttWS string
	publicURL, agentBrokerURL        string
	brokerURL, brokerUser            string
	brokerPasswordFile, brokerCA     string
	brokerAuthDir, brokerPIDFile     string
	tlsCert, tlsKey, tlsHosts        string
	downloads                        string
	healthDelay                      time.Duration
	alertInterval, renotify, offline time.Duration
	insecure                         bool
	enrollPerMinute                  int
	jobRetention                     time.Duration
	agentMsgRate                     float64
	agentByteRate                    byteRate
	metricsTokenFile, metricsAddr    string
	metricsRefresh                   time.Duration
	ssePerUser, sseTotal             int
	signIn                           signInFlags
	loginPerMinute                   int
}

// brokerConn is the embedded broker or the connection to an external one:
// the console's publisher.
type brokerConn interface {
	Publish(topic string, payload []byte, retain bool, expiry time.Duration) error
	Disconnect(clientID string)
	Close() error
}

// listen opens a TCP listener, with TLS when cfg is set.
func listen(addr string, cfg *tls.Config) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	if cfg != nil {
		ln = tls.NewListener(ln, cfg)
	}
	return ln, nil
}

// readToken reads a secret from a file (surrounding white space dropped);
// an empty path is no token.
func readToken(path string) (string, error) {
	if path == "" {
		return "", nil
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("%s is empty", path)
	}
	return tok, nil
}

// httpTimeouts are an HTTP server's timeouts.
type httpTimeouts struct{ readHeader, read, write, idle time.Duration }

// serverTimeouts: requests are small (JSON, forms, a login), so a client
// gets a minute to send a whole one; a response must be written within two
// minutes of its request. The long responses set their own deadlines
// (console/api: the job event stream per event, the store backup and the
// agent downloads per write), as net/http would otherwise cut them.
var serverTimeouts = httpTimeouts{readHeader: 10 * time.Second, read: time.Minute, write: 2 * time.Minute, idle: 2 * time.Minute}

// newHTTPServer is the server of the console's HTTP listeners.
func newHTTPServer(h http.Handler, t httpTimeouts) *http.Server {
	return &http.Server{
		Handler:           h,
		ReadHeaderTimeout: t.readHeader,
		ReadTimeout:       t.read,
		WriteTimeout:      t.write,
		IdleTimeout:       t.idle,
	}
}

// limits are the embedded broker's per-client limits from the flags.
func (f serverFlags) limits() *broker.Limits {
	return &broker.Limits{
		AgentMessages: broker.Limit{Rate: f.agentMsgRate},
		AgentBytes:    broker.Limit{Rate: float64(f.agentByteRate)},
	}
}

// byteRate is a flag of bytes per second: a number, optionally with a
// binary unit (KiB, MiB, GiB; K, M, G mean the same), or -1 for none.
type byteRate float64

func (b *byteRate) String() string { return strconv.FormatFloat(float64(*b), 'f', -1, 64) }

func (b *byteRate) Set(s string) error {
	s = strings.TrimSpace(s)
	mult := 1.0
	for _, u := range []struct {
		suffix string
		mult   float64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"K", 1 << 10}, {"M", 1 << 20}, {"G", 1 << 30}} {
		if rest, ok := strings.CutSuffix(s, u.suffix); ok {
			s, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	v, err := strconv.ParseFloat(s, 64)
	if err != nil || v != v || v == 0 || (v < 0 && v != -1) {
		return fmt.Errorf("%q is not a positive number of bytes (16MiB, 500KiB, 1048576) or -1", s)
	}
	*b = byteRate(v * mult)
	if v < 0 {
		*b = -1
	}
	return nil
}

// certHosts lists the names the generated certificate must cover.
func certHosts(f serverFlags) []string {
	hosts := []string{"localhost", "127.0.0.1", "::1"}
	if h, err := os.Hostname(); err == nil {
		hosts = append(hosts, h)
	}
	for _, addr := range []string{f.httpAddr, f.mqttAddr} {
		if h, _, err := net.SplitHostPort(addr); err == nil && h != "" && h != "0.0.0.0" && h != "::" {
			hosts = append(hosts, h)
		}
	}
	for _, h := range strings.Split(f.tlsHosts, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

func runServer(args []string) error {
	var f serverFlags
	fs := flag.NewFlagSet("server", flag.ContinueOnError)
	fs.StringVar(&f.data, "data", "data", "data directory (store, broker state, master key)")
	fs.StringVar(&f.httpAddr, "http", "127.0.0.1:8080", "HTTP listen address")
	fs.StringVar(&f.mqttAddr, "mqtt", "127.0.0.1:1883", "MQTT listen address")
	fs.StringVar(&f.mqttWS, "mqtt-ws", "", "MQTT over WebSocket listen address (optional)")
	fs.StringVar(&f.publicURL, "public-url", "", "URL agents and browsers use to reach the console (default: from each request)")
	fs.StringVar(&f.agentBrokerURL, "agent-broker-url", "", "broker URL given to enrolling agents (default: --broker-url, else the request's host and the MQTT port)")
	fs.StringVar(&f.brokerURL, "broker-url", "", "use this external MQTT 5 broker (mqtt://, mqtts://, ws://, wss://) instead of the embedded one; see docs/external-broker.md")
	fs.StringVar(&f.brokerUser, "broker-user", "restic-manager-console", "the console's username on the external broker")
	fs.StringVar(&f.brokerPasswordFile, "broker-password-file", "", "file holding the console's password on the external broker (default: derived from the master key and written into --broker-auth-dir)")
	fs.StringVar(&f.brokerCA, "broker-ca", "", "PEM file of CAs to trust for the external broker, besides the console's own CA")
	fs.StringVar(&f.brokerAuthDir, "broker-auth-dir", "", "write Mosquitto's password and ACL files here after every credential change")
	fs.StringVar(&f.brokerPIDFile, "broker-pid-file", "", "Mosquitto's PID file: send it SIGHUP after writing --broker-auth-dir so it re-reads them")
	fs.StringVar(&f.tlsCert, "tls-cert", "", "TLS certificate file")
	fs.StringVar(&f.tlsKey, "tls-key", "", "TLS key file")
	fs.StringVar(&f.tlsHosts, "tls-hosts", "", "extra comma-separated names and IPs for the generated certificate (localhost, 127.0.0.1, this hostname and the listen addresses are always in it)")
	fs.StringVar(&f.downloads, "downloads", "", "directory of agent binaries (restic-manager-agent-OS-ARCH) served at /downloads/ for the install scripts")
	fs.DurationVar(&f.healthDelay, "health-delay", 30*time.Second, "refresh a repository's health once it has been quiet this long after a change")
	fs.DurationVar(&f.alertInterval, "alert-interval", 30*time.Second, "how often the alert rules run")
	fs.DurationVar(&f.renotify, "renotify", 4*time.Hour, "repeat notifications of a firing, unacknowledged alert this often")
	fs.DurationVar(&f.offline, "offline-after", time.Hour, "alert when a host has been offline this long")
	fs.DurationVar(&f.jobRetention, "job-retention", 180*24*time.Hour, "delete finished jobs (and their output) older than this; a host's last jobs are always kept; negative keeps everything")
	fs.IntVar(&f.enrollPerMinute, "enroll-rate", 30, "enrolments allowed per client IP and minute (-1: no limit), for large rollouts behind one address")
	fs.Float64Var(&f.agentMsgRate, "agent-msg-rate", broker.DefaultAgentMsgRate, "MQTT packets each agent may send per second, with a burst of 20 s worth; past it the agent is disconnected (reason 0x96); -1: no limit (embedded broker only)")
	f.agentByteRate = broker.DefaultAgentByteRate
	fs.Var(&f.agentByteRate, "agent-byte-rate", "bytes each agent may send per second (e.g. 16MiB, 500KiB), with a burst of 8 s worth; past it the agent is disconnected (reason 0x97); -1: no limit (embedded broker only)")
	fs.StringVar(&f.metricsTokenFile, "metrics-token-file", "", "file holding a bearer token that /metrics then requires (Authorization: Bearer TOKEN); without it and --metrics-addr, /metrics is open to anyone who reaches the console")
	fs.DurationVar(&f.metricsRefresh, "metrics-refresh", 15*time.Second, "read the fleet's gauges (hosts, repositories, alerts) from the store at most this often for /metrics; negative: at every scrape")
	fs.StringVar(&f.metricsAddr, "metrics-addr", "", "serve /metrics on this address only (HTTPS unless --insecure), not on --http")
	fs.IntVar(&f.ssePerUser, "sse-per-user", console.DefaultSSEPerUser, "job event streams (live job pages) one user may hold open; past it: 429")
	fs.IntVar(&f.sseTotal, "sse-max", console.DefaultSSETotal, "job event streams open at once in all; past it: 429")
	fs.BoolVar(&f.insecure, "insecure", false, "plain TCP and HTTP: local development and tests only")
	f.signIn.add(fs)
	fs.IntVar(&f.loginPerMinute, "login-rate", 10, "sign-in attempts (passwords, second-factor codes, OpenID callbacks) allowed per client IP and minute")
	if err := fs.Parse(args); err != nil {
		return err
	}
	oidcCfg, err := f.signIn.options()
	if err != nil {
		return err
	}
	log := cli.Logger()
	if err := os.MkdirAll(f.data, 0o700); err != nil {
		return err
	}
	var srvTLS *tlsutil.Server
	switch {
	case f.insecure:
		log.Warn("running with --insecure: MQTT and HTTP are UNENCRYPTED and agents are not pinned; use this for local development and tests only")
	case f.tlsCert != "" || f.tlsKey != "":
		var err error
		if srvTLS, err = tlsutil.LoadFiles(f.tlsCert, f.tlsKey); err != nil {
			return err
		}
	default:
		var err error
		if srvTLS, err = tlsutil.LoadOrCreate(filepath.Join(f.data, "tls"), certHosts(f)); err != nil {
			return err
		}
		log.Info("using the generated certificate; agents pin its CA", "ca_fingerprint", srvTLS.CAFingerprint, "dir", filepath.Join(f.data, "tls"))
	}
	var tlsCfg *tls.Config
	var caFingerprint string
	var caPEM []byte
	if srvTLS != nil {
		tlsCfg, caFingerprint = srvTLS.Config, srvTLS.CAFingerprint
		if f.tlsCert == "" {
			caPEM, _ = os.ReadFile(filepath.Join(f.data, "tls", "ca.pem"))
		}
	}
	metricsToken, err := readToken(f.metricsTokenFile)
	if err != nil {
		return fmt.Errorf("--metrics-token-file: %w", err)
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if srvTLS != nil {
		// The generated certificate is renewed before it expires, by the
		// same CA (agents pin the CA); an operator's own is left alone.
		go srvTLS.RenewLoop(ctx, log)
	}

	store, err := storage.Open(filepath.Join(f.data, "store"))
	if err != nil {
		return err
	}
	defer store.Close()

	_, mqttPort, err := net.SplitHostPort(f.mqttAddr)
	if err != nil {
		return fmt.Errorf("--mqtt: %w", err)
	}
	extCfg, err := externalSettings(f, store)
	if err != nil {
		return err
	}
	agentBrokerURL := f.agentBrokerURL
	if agentBrokerURL == "" && extCfg != nil {
		agentBrokerURL = f.brokerURL
	}
	// The broker (or the external client) first, then the console with it
	// as its publisher, then the broker starts with the console's
	// authentication and ingest.
	var conn brokerConn
	var embedded *broker.Server
	var ext *broker.External
	var con *console.Console
	if extCfg != nil {
		if ext, err = extCfg.client(caPEM, log); err != nil {
			return err
		}
		conn = ext
	} else {
		// The console counts the clients the broker cuts off; it is built
		// next, before Serve starts the hooks that call this.
		limited := func(role, limit string) { con.RateLimited(role, limit) }
		if embedded, err = broker.New(broker.Options{DataDir: f.data, Logger: log, Limits: f.limits(), OnRateLimited: limited}); err != nil {
			return err
		}
		if err := embedded.ListenTCP("mqtt", f.mqttAddr, tlsCfg); err != nil {
			return err
		}
		if f.mqttWS != "" {
			if err := embedded.ListenWebsocket("mqtt-ws", f.mqttWS, tlsCfg); err != nil {
				return err
			}
		}
		conn = embedded
	}
	defer conn.Close()
	con, err = console.New(console.Options{
		Store: store, Publisher: conn, Logger: log, PublicURL: f.publicURL,
		BrokerURL: agentBrokerURL, MQTTPort: mqttPort, Version: cli.Version,
		TLS: tlsCfg != nil, SecureCookies: tlsCfg != nil, CAFingerprint: caFingerprint,
		DownloadsDir: f.downloads, CAPEM: caPEM, HealthDelay: f.healthDelay,
		AlertInterval: f.alertInterval, RenotifyEvery: f.renotify, OfflineAfter: f.offline,
		EnrollPerMinute: f.enrollPerMinute, BrokerAccounts: extCfg.accountsWriter(log),
		JobRetention: f.jobRetention, MetricsToken: metricsToken, MetricsElsewhere: f.metricsAddr != "",
		MetricsRefresh: f.metricsRefresh, SSEPerUser: f.ssePerUser, SSETotal: f.sseTotal,
		LoginPerMinute: f.loginPerMinute, OIDC: oidcCfg, LocalLoginOff: !f.signIn.localLogin, BreakGlassUser: f.signIn.breakGlass,
	})
	if err != nil {
		return err
	}
	defer con.Close()
	if ext != nil {
		if err := extCfg.start(ctx, ext, con, log); err != nil {
			return err
		}
	} else if err := embedded.Serve(con, con); err != nil {
		return fmt.Errorf("broker: %w", err)
	}
	con.BrokerServing()

	generated, err := con.EnsureAdmin(os.Getenv("RM_ADMIN_PASSWORD"))
	if err != nil {
		return fmt.Errorf("first admin: %w", err)
	}
	if generated != "" {
		// Printed once, on stdout, never into the structured log.
		fmt.Printf("\nFirst start: created user admin with password %s\nChange it after logging in.\n\n", generated)
	}

	ln, err := listen(f.httpAddr, tlsCfg)
	if err != nil {
		return err
	}
	var ready atomic.Bool
	srv := newHTTPServer(con.Handler(ready.Load), serverTimeouts)
	errc := make(chan error, 2)
	go func() { errc <- srv.Serve(ln) }()
	if f.metricsAddr != "" {
		mln, err := listen(f.metricsAddr, tlsCfg)
		if err != nil {
			return fmt.Errorf("--metrics-addr: %w", err)
		}
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", con.MetricsHandler())
		msrv := newHTTPServer(mux, serverTimeouts)
		go func() { errc <- msrv.Serve(mln) }()
		defer msrv.Close()
	}
	if f.metricsAddr == "" && metricsToken == "" {
		log.Info("/metrics is served without authentication on the HTTP address; see --metrics-token-file and --metrics-addr")
	}
	ready.Store(true)
	log.Info("restic-manager started", "http", ln.Addr().String(), "mqtt", f.mqttAddr, "tls", tlsCfg != nil, "data", f.data, "version", cli.Version)

	select {
	case <-ctx.Done():
	case err := <-errc:
		return fmt.Errorf("http: %w", err)
	}
	log.Info("shutting down")
	shutCtx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_ = srv.Shutdown(shutCtx)
	return nil
}
