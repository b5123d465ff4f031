package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// adminPassword is the simulator's own throwaway server's admin login.
const adminPassword = "fleetsim-admin-password"

// serverProc is the restic-manager server under test.
type serverProc struct {
	*harness.Server
	pprof string     // pprof listen address, "" without -pprof-dir
	api   *apiClient // with an API token of its own
}

// pprofOverlay adds a pprof listener to the server's main package at build
// time (go build -overlay), leaving the source tree untouched. It listens
// only when RM_FLEETSIM_PPROF names an address.
const pprofOverlay = `package main

import (
	"net/http"
	_ "net/http/pprof"
	"os"
	"runtime"
)

func init() {
	if addr := os.Getenv("RM_FLEETSIM_PPROF"); addr != "" {
		// Where goroutines wait matters as much as where CPU goes.
		runtime.SetBlockProfileRate(100000)
		runtime.SetMutexProfileFraction(20)
		go func() { _ = http.ListenAndServe(addr, nil) }()
	}
}
`

// buildServer compiles ./cmd/restic-manager into dir.
func buildServer(ctx context.Context, dir string, withPprof bool) (string, error) {
	root, err := harness.ModuleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "restic-manager")
	var flags []string
	if withPprof {
		src := filepath.Join(dir, "fleetsim_pprof.go")
		if err := os.WriteFile(src, []byte(pprofOverlay), 0o644); err != nil {
			return "", fmt.Errorf("pprof overlay: %w", err)
		}
		ov, _ := json.Marshal(map[string]any{"Replace": map[string]string{
			filepath.Join(root, "cmd", "restic-manager", "zz_fleetsim_pprof.go"): src,
		}})
		ovPath := filepath.Join(dir, "overlay.json")
		if err := os.WriteFile(ovPath, ov, 0o644); err != nil {
			return "", fmt.Errorf("pprof overlay: %w", err)
		}
		flags = []string{"-overlay", ovPath}
	}
	return bin, harness.Build(ctx, root, "restic-manager", bin, flags...)
}

// startServer runs the server on free loopback ports with a fresh data
// directory, waits for /healthz and logs in with an API token. A server
// returned with an error is running or has exited: stop it.
// With mqttAddr "" it takes a free port for its embedded broker; with an
// external broker (extra holds --broker-url) mqttAddr is that broker's,
// where the agents connect.
func startServer(ctx context.Context, bin, work, mqttAddr string, pprof bool, extra, extraEnv []string, httpParallel int) (*serverProc, error) {
	s := &serverProc{}
	env := append([]string(nil), extraEnv...)
	if pprof {
		var err error
		if s.pprof, err = testenv.FreeAddr(); err != nil {
			return nil, err
		}
		env = append(env, "RM_FLEETSIM_PPROF="+s.pprof)
	}
	var err error
	s.Server, err = harness.StartServer(harness.ServerConfig{
		Bin: bin, Data: filepath.Join(work, "data"), MQTTAddr: mqttAddr, Insecure: true,
		// The ceiling floods the console on purpose: it measures ingest, not
		// the per-agent rate limits.
		Args: append([]string{"--enroll-rate", "-1", "--agent-msg-rate", "-1", "--agent-byte-rate", "-1",
			// Health refreshes would send extra jobs to the simulated agents in
			// the middle of a scenario; they are not what is measured here.
			"--health-delay", "1h"}, extra...),
		Env: env, Log: filepath.Join(work, "server.log"),
		AdminPassword: adminPassword, ReadyTimeout: 60 * time.Second,
	})
	if err != nil {
		return nil, err
	}
	if err := s.Ready(ctx); err != nil {
		return s, fmt.Errorf("%w (log: %s)", err, s.Log)
	}
	tok, err := s.API.NewToken(ctx, "fleetsim")
	if err != nil {
		return s, err
	}
	s.api = newAPIClient(s.URL(""), tok, httpParallel)
	return s, nil
}

// stop sends SIGTERM and waits, then SIGKILL.
func (s *serverProc) stop() {
	if s == nil {
		return
	}
	_ = s.Proc.Stop(30 * time.Second)
}

// duBytes is the disk usage of a tree (allocated blocks, like du).
func duBytes(dir string) int64 {
	var n int64
	_ = filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				n += st.Blocks * 512
			} else {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// apiClient calls the console's JSON API with a bearer token.
type apiClient struct {
	*harness.Client
	sse *http.Client // no timeout: event streams stay open
}

func newAPIClient(base, token string, parallel int) *apiClient {
	tr := &http.Transport{
		MaxIdleConns:        parallel * 2,
		MaxIdleConnsPerHost: parallel * 2, // reuse connections: thousands of calls must not exhaust ports
		IdleConnTimeout:     time.Minute,
	}
	return &apiClient{
		Client: &harness.Client{Base: base, HTTP: &http.Client{Transport: tr, Timeout: 2 * time.Minute}, Token: token},
		sse:    &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}},
	}
}

// metrics scrapes /metrics into "name{labels}" → value.
func (a *apiClient) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", a.Base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.HTTP.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, "restic_manager_") && !strings.HasPrefix(line, "go_") {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		if v, err := strconv.ParseFloat(line[i+1:], 64); err == nil {
			out[line[:i]] = v
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	return out, nil
}

// Metric names the simulator reads.
const (
	mIngestedStatus   = `restic_manager_mqtt_messages_ingested_total{kind="status"}`
	mIngestedProgress = `restic_manager_mqtt_messages_ingested_total{kind="progress"}`
	mIngestedResult   = `restic_manager_mqtt_messages_ingested_total{kind="result"}`
	mIngestedReported = `restic_manager_mqtt_messages_ingested_total{kind="schedules/reported"}`
	mRejected         = `restic_manager_mqtt_messages_rejected_total`
	mFiresAccepted    = `restic_manager_schedule_fires_total{outcome="accepted"}`
	mFiresDuplicate   = `restic_manager_schedule_fires_total{outcome="duplicate"}`
	mAgentsConnected  = `restic_manager_agents_connected`
)

// profile saves a CPU profile of secs seconds, or with secs 0 a heap
// profile, from the server's pprof listener.
func (s *serverProc) profile(ctx context.Context, dir, name string, secs time.Duration) error {
	if s.pprof == "" {
		return nil
	}
	get := func(path, file string, timeout time.Duration) error {
		c := &http.Client{Timeout: timeout}
		req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+s.pprof+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			return fmt.Errorf("pprof %s: %w", path, err)
		}
		defer resp.Body.Close()
		f, err := os.Create(filepath.Join(dir, file))
		if err != nil {
			return fmt.Errorf("pprof %s: %w", path, err)
		}
		defer f.Close()
		if _, err := io.Copy(f, resp.Body); err != nil {
			return fmt.Errorf("pprof %s: %w", path, err)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("pprof dir: %w", err)
	}
	if secs > 0 {
		n := int(secs.Seconds())
		blockErr := make(chan error, 1)
		go func() {
			blockErr <- get(fmt.Sprintf("/debug/pprof/block?seconds=%d", n), name+".block.pprof", secs+time.Minute)
		}()
		err := get(fmt.Sprintf("/debug/pprof/profile?seconds=%d", n), name+".cpu.pprof", secs+time.Minute)
		return errors.Join(err, <-blockErr)
	}
	// The text form ends with runtime.MemStats: StackInuse and HeapInuse
	// say where the RSS goes (goroutine stacks are not in the profile).
	return errors.Join(get("/debug/pprof/heap", name+".heap.pprof", time.Minute),
		get("/debug/pprof/heap?debug=1", name+".heap.txt", time.Minute),
		get("/debug/pprof/goroutine?debug=1", name+".goroutine.txt", time.Minute))
}
