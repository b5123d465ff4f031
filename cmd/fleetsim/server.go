package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// adminPassword is the simulator's own throwaway server's admin login.
const adminPassword = "fleetsim-admin-password"

// serverProc is the restic-manager server under test.
type serverProc struct {
	cmd      *exec.Cmd
	done     chan struct{}
	data     string
	logPath  string
	httpAddr string
	mqttAddr string
	pprof    string // pprof listen address, "" without -pprof-dir
	api      *apiClient
}

// moduleRoot finds the module's root directory (where go.mod is).
func moduleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the restic-manager module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
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
	root, err := moduleRoot(ctx)
	if err != nil {
		return "", err
	}
	bin := filepath.Join(dir, "restic-manager")
	args := []string{"build", "-o", bin}
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
		args = append(args, "-overlay", ovPath)
	}
	args = append(args, "./cmd/restic-manager")
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("go build ./cmd/restic-manager: %w\n%s", err, out)
	}
	return bin, nil
}

// freeAddr reserves a loopback port by binding and releasing it.
func freeAddr() (string, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return "", fmt.Errorf("free port: %w", err)
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// startServer runs the server on fresh loopback ports with a fresh data
// directory, waits for /healthz and logs in with an API token.
func startServer(ctx context.Context, bin, work string, pprof bool, extra, extraEnv []string, httpParallel int) (*serverProc, error) {
	s := &serverProc{data: filepath.Join(work, "data"), logPath: filepath.Join(work, "server.log"), done: make(chan struct{})}
	var err error
	if s.httpAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	if s.mqttAddr, err = freeAddr(); err != nil {
		return nil, err
	}
	logf, err := os.Create(s.logPath)
	if err != nil {
		return nil, fmt.Errorf("server log: %w", err)
	}
	args := []string{"server", "--data", s.data, "--http", s.httpAddr, "--mqtt", s.mqttAddr, "--insecure",
		"--enroll-rate", "-1",
		// Health refreshes would send extra jobs to the simulated agents in
		// the middle of a scenario; they are not what is measured here.
		"--health-delay", "1h"}
	args = append(args, extra...)
	s.cmd = exec.Command(bin, args...)
	env := append(os.Environ(), "RM_ADMIN_PASSWORD="+adminPassword)
	env = append(env, extraEnv...)
	if pprof {
		if s.pprof, err = freeAddr(); err != nil {
			return nil, err
		}
		env = append(env, "RM_FLEETSIM_PPROF="+s.pprof)
	}
	s.cmd.Env = env
	s.cmd.Stdout, s.cmd.Stderr = logf, logf
	if err := s.cmd.Start(); err != nil {
		logf.Close()
		return nil, fmt.Errorf("start server: %w", err)
	}
	go func() {
		_ = s.cmd.Wait()
		logf.Close()
		close(s.done)
	}()
	s.api = newAPIClient("http://"+s.httpAddr, httpParallel)
	deadline := time.Now().Add(60 * time.Second)
	for {
		if err := s.alive(); err != nil {
			return s, err
		}
		resp, err := s.api.hc.Get(s.api.base + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				break
			}
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("server not healthy after 60s (log: %s)", s.logPath)
		}
		select {
		case <-ctx.Done():
			return s, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	if err := s.api.login(ctx); err != nil {
		return s, err
	}
	return s, nil
}

// alive reports an error once the server process has exited.
func (s *serverProc) alive() error {
	select {
	case <-s.done:
		return fmt.Errorf("server exited: %s (log: %s)", s.cmd.ProcessState, s.logPath)
	default:
		return nil
	}
}

// stop sends SIGTERM and waits, then SIGKILL.
func (s *serverProc) stop() {
	if s == nil || s.cmd == nil || s.cmd.Process == nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-s.done:
	case <-time.After(30 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.done
	}
}

// procStats is a process's memory and CPU from /proc.
type procStats struct {
	RSSMiB  float64 `json:"rss_mib"`
	HWMMiB  float64 `json:"hwm_mib"`
	CPUSecs float64 `json:"cpu_s"`
}

// clockTicks is USER_HZ, 100 on every Linux this runs on.
const clockTicks = 100

func readProc(pid int) procStats {
	var st procStats
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
		for _, line := range strings.Split(string(b), "\n") {
			for key, dst := range map[string]*float64{"VmRSS:": &st.RSSMiB, "VmHWM:": &st.HWMMiB} {
				if rest, ok := strings.CutPrefix(line, key); ok {
					v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
					*dst = v / 1024
				}
			}
		}
	}
	if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid)); err == nil {
		// Fields after the command name (which may hold spaces) in parentheses.
		if i := bytes.LastIndexByte(b, ')'); i > 0 {
			f := strings.Fields(string(b[i+1:]))
			if len(f) > 12 {
				ut, _ := strconv.ParseFloat(f[11], 64)
				stt, _ := strconv.ParseFloat(f[12], 64)
				st.CPUSecs = (ut + stt) / clockTicks
			}
		}
	}
	return st
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
	base  string
	hc    *http.Client
	sse   *http.Client // no timeout: event streams stay open
	token string
}

func newAPIClient(base string, parallel int) *apiClient {
	tr := &http.Transport{
		MaxIdleConns:        parallel * 2,
		MaxIdleConnsPerHost: parallel * 2, // reuse connections: thousands of calls must not exhaust ports
		IdleConnTimeout:     time.Minute,
	}
	return &apiClient{
		base: base,
		hc:   &http.Client{Transport: tr, Timeout: 2 * time.Minute},
		sse:  &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 512}},
	}
}

// apiError is a non-2xx answer.
type apiError struct {
	Method, Path string
	Status       int
	Body         string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: status %d: %s", e.Method, e.Path, e.Status, strings.TrimSpace(e.Body))
}

func (a *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	return a.doH(ctx, method, path, body, out, nil)
}

// doH is do that also hands back the answer's headers.
func (a *apiClient) doH(ctx context.Context, method, path string, body, out any, hdr *http.Header) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return fmt.Errorf("%s %s: encode: %w", method, path, err)
		}
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, a.base+path, rd)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	req.Header.Set("Content-Type", "application/json")
	if a.token != "" {
		req.Header.Set("Authorization", "Bearer "+a.token)
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return fmt.Errorf("%s %s: %w", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("%s %s: read: %w", method, path, err)
	}
	if hdr != nil {
		*hdr = resp.Header
	}
	if resp.StatusCode/100 != 2 {
		return &apiError{Method: method, Path: path, Status: resp.StatusCode, Body: string(b)}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: decode: %w", method, path, err)
		}
	}
	return nil
}

// login opens a session as admin and swaps it for an API token.
func (a *apiClient) login(ctx context.Context) error {
	jar, _ := cookiejar.New(nil)
	sess := &apiClient{base: a.base, hc: &http.Client{Jar: jar, Timeout: 30 * time.Second}}
	if err := sess.do(ctx, "POST", "/api/v1/login", map[string]string{"username": "admin", "password": adminPassword}, nil); err != nil {
		return fmt.Errorf("login: %w", err)
	}
	var tok struct {
		Token string `json:"token"`
	}
	if err := sess.do(ctx, "POST", "/api/v1/tokens", map[string]string{"name": "fleetsim"}, &tok); err != nil {
		return fmt.Errorf("api token: %w", err)
	}
	if tok.Token == "" {
		return errors.New("api token: empty answer")
	}
	a.token = tok.Token
	return nil
}

// metrics scrapes /metrics into "name{labels}" → value.
func (a *apiClient) metrics(ctx context.Context) (map[string]float64, error) {
	req, err := http.NewRequestWithContext(ctx, "GET", a.base+"/metrics", nil)
	if err != nil {
		return nil, err
	}
	resp, err := a.hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("GET /metrics: %w", err)
	}
	defer resp.Body.Close()
	out := map[string]float64{}
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' || !strings.HasPrefix(line, "restic_manager_") {
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
		get("/debug/pprof/heap?debug=1", name+".heap.txt", time.Minute))
}
