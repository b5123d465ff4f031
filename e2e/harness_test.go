// Package e2e runs the real binaries: the server, agents, restic and
// rest-server as separate processes on loopback, driven through the public
// API and real MQTT clients. The processes and the API client are
// internal/harness's; this file ties them to a test (it owns them and
// fails on their errors).
package e2e

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

var bins struct {
	once   sync.Once
	dir    string // removed by TestMain after the run
	server string
	agent  string
	err    error
}

// TestMain removes the built commands after the run: two race-built
// binaries, ~40 MB, were left in the temp dir by every run before.
func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		_ = os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

// binaries builds both commands once per test binary run, with -race
// unless RM_BENCH_NORACE is set.
func binaries(t testing.TB) (server, agent string) {
	t.Helper()
	bins.once.Do(func() {
		dir, err := os.MkdirTemp("", "rm-e2e-bin-")
		if err != nil {
			bins.err = err
			return
		}
		bins.dir = dir
		var flags []string
		if os.Getenv("RM_BENCH_NORACE") == "" {
			flags = []string{"-race"}
		}
		root := testenv.Root(t)
		for name, out := range map[string]*string{"restic-manager": &bins.server, "restic-manager-agent": &bins.agent} {
			*out = filepath.Join(dir, name)
			f := flags
			if os.Getenv("RM_BENCH_PROFILE_DIR") != "" {
				var ov string
				if ov, bins.err = profileOverlay(dir, root, name); bins.err != nil {
					return
				}
				f = append(f[:len(f):len(f)], "-overlay", ov)
			}
			if bins.err = harness.Build(context.Background(), root, name, *out, f...); bins.err != nil {
				return
			}
		}
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.server, bins.agent
}

// profileSource, added to a command's main package at build time when
// RM_BENCH_PROFILE_DIR is set (go build -overlay: the source tree is left
// as it is), writes the process's CPU profile in 5-second windows to
// RM_BENCH_PROFILE_DIR/cpu-{command}-{pid}-{n}.pprof, for benchmarks.
const profileSource = `package main

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime/pprof"
	"time"
)

func init() {
	dir := os.Getenv("RM_BENCH_PROFILE_DIR")
	if dir == "" {
		return
	}
	go func() {
		for n := 0; ; n++ {
			f, err := os.Create(filepath.Join(dir, fmt.Sprintf("cpu-%s-%d-%03d.pprof", filepath.Base(os.Args[0]), os.Getpid(), n)))
			if err != nil {
				return
			}
			if pprof.StartCPUProfile(f) != nil {
				return
			}
			time.Sleep(5 * time.Second)
			pprof.StopCPUProfile()
			f.Close()
		}
	}()
}
`

// profileOverlay writes the overlay that adds profileSource to command
// name and returns its path.
func profileOverlay(dir, root, name string) (string, error) {
	src := filepath.Join(dir, name+"_profile.go")
	if err := os.WriteFile(src, []byte(profileSource), 0o644); err != nil {
		return "", err
	}
	ov, _ := json.Marshal(map[string]any{"Replace": map[string]string{
		filepath.Join(root, "cmd", name, "zz_bench_profile.go"): src,
	}})
	p := filepath.Join(dir, name+"_overlay.json")
	return p, os.WriteFile(p, ov, 0o644)
}

// own makes the test the process's owner: it is killed when the test ends,
// and its output is shown when the test failed.
func own(t testing.TB, p *harness.Proc) {
	t.Cleanup(func() {
		p.Kill()
		if t.Failed() {
			t.Logf("---- %s output ----\n%s", p.Name(), p.Output())
		}
	})
}

// start starts a process the test owns.
func start(t testing.TB, name string, env []string, bin string, args ...string) *harness.Proc {
	t.Helper()
	p, err := harness.Start(harness.Cmd{Name: name, Bin: bin, Args: args, Env: env})
	if err != nil {
		t.Fatal(err)
	}
	own(t, p)
	return p
}

// stop sends SIGTERM and waits; a process still running after 30s fails
// the test.
func stop(t testing.TB, p *harness.Proc) {
	t.Helper()
	if err := p.Stop(30 * time.Second); err != nil {
		t.Fatal(err)
	}
}

// eventually polls fn until it returns nil or the timeout passes.
func eventually(t testing.TB, timeout time.Duration, what string, fn func() error) {
	t.Helper()
	if err := harness.Poll(context.Background(), timeout, fn); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

const adminPassword = "correct-horse-battery-staple"

// server is a running control plane (its API client logged in as admin)
// owned by a test.
type server struct {
	*harness.Server
	t testing.TB
}

// again starts a new server process on the same data, addresses and flags
// (after the previous one was killed or stopped).
func (s *server) again(t testing.TB) *server {
	t.Helper()
	return startServerMode(t, s.Data, s.HTTPAddr, s.MQTTAddr, s.Insecure, s.Args...)
}

func startServer(t testing.TB, data, httpAddr, mqttAddr string, extra ...string) *server {
	t.Helper()
	return startServerMode(t, data, httpAddr, mqttAddr, false, extra...)
}

// startServerMode starts a server with TLS (the default: a generated CA the
// clients pin) or, with insecure, plain HTTP and MQTT.
func startServerMode(t testing.TB, data, httpAddr, mqttAddr string, insecure bool, extra ...string) *server {
	t.Helper()
	bin, _ := binaries(t)
	hs, err := harness.StartServer(harness.ServerConfig{Bin: bin, Data: data, HTTPAddr: httpAddr, MQTTAddr: mqttAddr,
		Insecure: insecure, Args: extra, AdminPassword: adminPassword})
	if err != nil {
		t.Fatal(err)
	}
	own(t, hs.Proc)
	if err := hs.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	return &server{Server: hs, t: t}
}

func newServer(t testing.TB, extra ...string) *server {
	t.Helper()
	return startServer(t, t.TempDir(), testenv.FreePort(t), testenv.FreePort(t), extra...)
}

// check fails the test on an API error.
func (s *server) check(err error) {
	s.t.Helper()
	if err != nil {
		s.t.Fatal(err)
	}
}

// do calls the API and decodes the answer into out, failing the test when
// the status is not want.
func (s *server) do(method, path string, body, out any, want int) {
	s.t.Helper()
	s.check(s.API.Expect(context.Background(), method, path, body, out, want))
}

func (s *server) createHost(name string) harness.HostCreated {
	s.t.Helper()
	h, err := s.API.CreateHost(context.Background(), name)
	s.check(err)
	return h
}

func (s *server) host(id string) harness.Host {
	s.t.Helper()
	h, err := s.API.Host(context.Background(), id)
	s.check(err)
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

// createRepo adds a repository that hosts may use (its access list).
func (s *server) createRepo(name, url, password string, hosts ...string) string {
	s.t.Helper()
	id, err := s.API.CreateRepo(context.Background(), name, url, password, hosts...)
	s.check(err)
	return id
}

// bindHosts adds hosts to a repository's access list.
func (s *server) bindHosts(repoID string, hosts ...string) {
	s.t.Helper()
	s.check(s.API.BindHosts(context.Background(), repoID, hosts...))
}

func (s *server) createJob(hostID string, body map[string]any) string {
	s.t.Helper()
	id, err := s.API.CreateJob(context.Background(), hostID, body)
	s.check(err)
	return id
}

func (s *server) job(id string) harness.Job {
	s.t.Helper()
	j, err := s.API.Job(context.Background(), id)
	s.check(err)
	return j
}

// jobs lists every job of the console, page by page.
func (s *server) jobs() []harness.Job {
	s.t.Helper()
	js, err := s.API.Jobs(context.Background(), 50)
	s.check(err)
	return js
}

func (s *server) waitJob(id string, timeout time.Duration) harness.Job {
	s.t.Helper()
	var j harness.Job
	eventually(s.t, timeout, "job "+id+" to end", func() error {
		j = s.job(id)
		if !harness.Terminal(j.Status) {
			return fmt.Errorf("status %s", j.Status)
		}
		return nil
	})
	return j
}

// agentProc is an enrolled agent whose processes the test owns.
type agentProc struct{ *harness.Agent }

func enrollAgent(t testing.TB, s *server, token, restic string) *agentProc {
	t.Helper()
	_, bin := binaries(t)
	a, err := harness.EnrollAgent(context.Background(), bin, s.Server, token, restic, filepath.Join(t.TempDir(), "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	return &agentProc{a}
}

func (a *agentProc) start(t testing.TB) {
	t.Helper()
	p, err := a.Start()
	if err != nil {
		t.Fatal(err)
	}
	own(t, p)
}

// restServer runs rest-server on a loopback port over dir.
func restServer(t testing.TB, dir string, extra ...string) string {
	t.Helper()
	p, addr, err := harness.StartRestServer(context.Background(), testenv.RestServer(t), dir, extra...)
	if p != nil {
		own(t, p)
	}
	if err != nil {
		t.Fatal(err)
	}
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

type resticSnap struct {
	ID    string   `json:"id"`
	Tags  []string `json:"tags"`
	Paths []string `json:"paths"`
}

// resticSnapshots lists a repository's snapshots with restic itself.
func resticSnapshots(t testing.TB, repoURL, password string, flags ...string) []resticSnap {
	t.Helper()
	var snaps []resticSnap
	out := restic(t, repoURL, password, append(flags, "snapshots", "--json")...)
	if err := json.Unmarshal(out, &snaps); err != nil {
		t.Fatalf("restic snapshots output %q: %v", out, err)
	}
	return snaps
}
