// Package e2e runs the real binaries: the server, agents, restic and
// rest-server as separate processes on loopback, driven through the public
// API and real MQTT clients.
package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/internal/tlsutil"
)

var bins struct {
	once   sync.Once
	server string
	agent  string
	err    error
}

// binaries builds both commands once per test binary run.
func binaries(t testing.TB) (server, agent string) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "rm-e2e-bin-")
		if err != nil {
			bins.err = err
			return
		}
		root := testenv.Root(t)
		for name, out := range map[string]*string{"restic-manager": &bins.server, "restic-manager-agent": &bins.agent} {
			*out = filepath.Join(dir, name)
			args := []string{"build", "-race", "-o", *out, "./cmd/" + name}
			if os.Getenv("RM_BENCH_NORACE") != "" {
				args = []string{"build", "-o", *out, "./cmd/" + name}
			}
			cmd := exec.Command("go", args...)
			cmd.Dir = root
			if b, err := cmd.CombinedOutput(); err != nil {
				bins.err = fmt.Errorf("build %s: %v\n%s", name, err, b)
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.server, bins.agent
}

// proc is a started child process whose output is kept for assertions and
// shown when the test fails.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func start(t testing.TB, name string, env []string, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = append(os.Environ(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", name, p.out.String())
		}
	})
	return p
}

// stop sends SIGTERM and waits.
func (p *proc) stop(t testing.TB) {
	t.Helper()
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		t.Fatalf("%s did not stop after SIGTERM", p.name)
	}
}

// kill is kill -9: no clean-up of any kind.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

// eventually polls fn until it returns nil or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = fn(); err == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
}

const adminPassword = "correct-horse-battery-staple"

// server is a running control plane and an API client logged into it.
type server struct {
	t        testing.TB
	proc     *proc
	data     string
	httpAddr string
	mqttAddr string
	client   *http.Client // logged in as admin
	anon     *http.Client // no session, same TLS trust
	insecure bool
	caFP     string // the CA the clients pin ("" when insecure)
	extra    []string
}

// again starts a new server process on the same data, addresses and flags
// (after the previous one was killed or stopped).
func (s *server) again(t testing.TB) *server {
	t.Helper()
	return startServerMode(t, s.data, s.httpAddr, s.mqttAddr, s.insecure, s.extra...)
}

func startServer(t testing.TB, data, httpAddr, mqttAddr string, extra ...string) *server {
	return startServerMode(t, data, httpAddr, mqttAddr, false, extra...)
}

// startServerMode starts a server with TLS (the default: a generated CA the
// clients pin) or, with insecure, plain HTTP and MQTT.
func startServerMode(t testing.TB, data, httpAddr, mqttAddr string, insecure bool, extra ...string) *server {
	t.Helper()
	bin, _ := binaries(t)
	s := &server{t: t, data: data, httpAddr: httpAddr, mqttAddr: mqttAddr, insecure: insecure, extra: extra}
	args := []string{"server", "--data", data, "--http", httpAddr, "--mqtt", mqttAddr}
	if insecure {
		args = append(args, "--insecure")
	}
	args = append(args, extra...)
	s.proc = start(t, "server", []string{"RM_ADMIN_PASSWORD=" + adminPassword}, bin, args...)
	s.anon = &http.Client{Timeout: 30 * time.Second}
	if !insecure {
		eventually(t, 30*time.Second, "the server's CA", func() error {
			s.exited()
			b, err := os.ReadFile(filepath.Join(data, "tls", "ca.pem"))
			if err != nil {
				return err
			}
			blk, _ := pem.Decode(b)
			if blk == nil {
				return errorf("ca.pem not PEM yet")
			}
			s.caFP = tlsutil.Fingerprint(blk.Bytes)
			return nil
		})
		s.anon.Transport = &http.Transport{TLSClientConfig: tlsutil.ClientConfig(s.caFP, "127.0.0.1")}
	}
	eventually(t, 30*time.Second, "server /healthz", func() error {
		s.exited()
		resp, err := s.anon.Get(s.url("/healthz"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	jar, _ := cookiejar.New(nil)
	s.client = &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: s.anon.Transport}
	s.do("POST", "/api/v1/login", map[string]string{"username": "admin", "password": adminPassword}, nil, 200)
	return s
}

// exited fails the test at once when the server process has died.
func (s *server) exited() {
	select {
	case <-s.proc.done:
		s.t.Fatalf("server exited:\n%s", s.proc.out.String())
	default:
	}
}

func newServer(t testing.TB, extra ...string) *server {
	return startServer(t, t.TempDir(), testenv.FreePort(t), testenv.FreePort(t), extra...)
}

func (s *server) url(path string) string {
	if s.insecure {
		return "http://" + s.httpAddr + path
	}
	return "https://" + s.httpAddr + path
}

// do calls the API and decodes the answer into out, failing the test when
// the status is not want.
func (s *server) do(method, path string, body, out any, want int) {
	s.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, s.url(path), rd)
	req.Header.Set("Content-Type", "application/json")
	resp, err := s.client.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != want {
		s.t.Fatalf("%s %s: status %d, want %d: %s", method, path, resp.StatusCode, want, b)
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			s.t.Fatalf("%s %s: decode %s: %v", method, path, b, err)
		}
	}
}

type hostCreated struct {
	ID            string `json:"id"`
	EnrollToken   string `json:"enroll_token"`
	EnrollCommand string `json:"enroll_command"`
}

func (s *server) createHost(name string) hostCreated {
	var h hostCreated
	s.do("POST", "/api/v1/hosts", map[string]string{"name": name}, &h, 201)
	return h
}

type hostInfo struct {
	ID            string `json:"id"`
	Online        bool   `json:"online"`
	ResticVersion string `json:"restic_version"`
	LastBackup    *struct {
		JobID      string `json:"job_id"`
		Status     string `json:"status"`
		SnapshotID string `json:"snapshot_id"`
	} `json:"last_backup"`
}

func (s *server) host(id string) hostInfo {
	var h hostInfo
	s.do("GET", "/api/v1/hosts/"+id, nil, &h, 200)
	return h
}

func (s *server) waitOnline(id string, want bool) {
	s.t.Helper()
	eventually(s.t, 60*time.Second, fmt.Sprintf("host %s online=%v", id, want), func() error {
		if h := s.host(id); h.Online != want {
			return fmt.Errorf("online=%v", h.Online)
		}
		return nil
	})
}

func (s *server) createRepo(name, url, password string) string {
	var r struct {
		ID string `json:"id"`
	}
	s.do("POST", "/api/v1/repos", map[string]any{"name": name, "url": url, "password": password}, &r, 201)
	return r.ID
}

type job struct {
	ID         string          `json:"id"`
	HostID     string          `json:"host_id"`
	Kind       string          `json:"kind"`
	Status     string          `json:"status"`
	ActorKind  string          `json:"actor_kind"`
	Actor      string          `json:"actor"`
	Error      string          `json:"error"`
	StderrTail string          `json:"stderr_tail"`
	SnapshotID string          `json:"snapshot_id"`
	Summary    json.RawMessage `json:"summary"`
	ExitCode   *int            `json:"exit_code"`
	StartedAt  time.Time       `json:"started_at"`
	CreatedAt  time.Time       `json:"created_at"`
}

func (s *server) createJob(hostID string, body map[string]any) string {
	var r struct {
		JobID string `json:"job_id"`
	}
	s.do("POST", "/api/v1/hosts/"+hostID+"/jobs", body, &r, 201)
	return r.JobID
}

func (s *server) job(id string) job {
	var j job
	s.do("GET", "/api/v1/jobs/"+id, nil, &j, 200)
	return j
}

var terminal = map[string]bool{"succeeded": true, "partial": true, "failed": true, "cancelled": true, "expired": true}

func (s *server) waitJob(id string, timeout time.Duration) job {
	s.t.Helper()
	var j job
	eventually(s.t, timeout, "job "+id+" to end", func() error {
		j = s.job(id)
		if !terminal[j.Status] {
			return fmt.Errorf("status %s", j.Status)
		}
		return nil
	})
	return j
}

// agentProc is an enrolled agent's config and its running process.
type agentProc struct {
	config string
	restic string
	proc   *proc
}

func enrollAgent(t testing.TB, s *server, token, restic string) *agentProc {
	t.Helper()
	_, bin := binaries(t)
	a := &agentProc{config: filepath.Join(t.TempDir(), "agent.yaml"), restic: restic}
	args := []string{"enroll", "--server", s.url(""), "--token", token, "--config", a.config, "--restic", restic}
	if s.caFP != "" {
		args = append(args, "--ca-fingerprint", s.caFP)
	}
	cmd := exec.Command(bin, args...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("enroll: %v\n%s", err, out)
	}
	return a
}

func (a *agentProc) start(t testing.TB) {
	t.Helper()
	_, bin := binaries(t)
	a.proc = start(t, "agent", nil, bin, "run", "--config", a.config)
}

// restServer runs rest-server on a loopback port over dir.
func restServer(t testing.TB, dir string, extra ...string) string {
	t.Helper()
	addr := testenv.FreePort(t)
	args := append([]string{"--path", dir, "--listen", addr, "--no-auth"}, extra...)
	start(t, "rest-server", nil, testenv.RestServer(t), args...)
	eventually(t, 20*time.Second, "rest-server", func() error {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			return err
		}
		resp.Body.Close()
		return nil
	})
	return addr
}

// makeTree writes n small files and a couple of larger random ones.
func makeTree(t testing.TB, n int) string {
	t.Helper()
	dir := t.TempDir()
	for i := range n {
		sub := filepath.Join(dir, fmt.Sprintf("d%02d", i%10))
		_ = os.MkdirAll(sub, 0o755)
		if err := os.WriteFile(filepath.Join(sub, fmt.Sprintf("f%04d.txt", i)), []byte(strings.Repeat(fmt.Sprintf("line %d\n", i), 20)), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	big := make([]byte, 2<<20)
	_, _ = rand.Read(big)
	if err := os.WriteFile(filepath.Join(dir, "big.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// resticSnapshots lists a repository's snapshots with restic itself.
func resticSnapshots(t testing.TB, repoURL, password string) []struct {
	ID    string   `json:"id"`
	Paths []string `json:"paths"`
} {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, testenv.Restic(t), "-r", repoURL, "--password-file", pw, "--no-cache", "snapshots", "--json")
	out, err := cmd.Output()
	if err != nil {
		var stderr []byte
		if ee, ok := err.(*exec.ExitError); ok {
			stderr = ee.Stderr
		}
		t.Fatalf("restic snapshots: %v: %s", err, stderr)
	}
	var snaps []struct {
		ID    string   `json:"id"`
		Paths []string `json:"paths"`
	}
	if err := json.Unmarshal(out, &snaps); err != nil {
		t.Fatalf("restic snapshots output %q: %v", out, err)
	}
	return snaps
}
