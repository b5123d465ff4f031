package e2e

// Getting agents onto machines and operating the console: the Linux install
// script run by /bin/sh against a live console, the agent under the
// kardianos/service wrapper, and backup-store / restore-store of a running
// console's store.

import (
	"bytes"
	"crypto/tls"
	"encoding/json"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// instPaths are where install.sh puts things below its --prefix.
type instPaths struct{ prefix, agent, config, stateDir string }

func instLayout(prefix string) instPaths {
	return instPaths{
		prefix:   prefix,
		agent:    filepath.Join(prefix, "usr", "local", "bin", "restic-manager-agent"),
		config:   filepath.Join(prefix, "etc", "restic-manager", "agent.yaml"),
		stateDir: filepath.Join(prefix, "etc", "restic-manager", "state"),
	}
}

// runInstallSh runs deploy/install/install.sh with /bin/sh (dash on
// Debian), returning its combined output and error.
func runInstallSh(t *testing.T, env []string, args ...string) (string, error) {
	t.Helper()
	script := filepath.Join(testenv.Root(t), "deploy", "install", "install.sh")
	cmd := exec.Command("/bin/sh", append([]string{script}, args...)...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	return string(out), err
}

func instMode(t *testing.T, path string) os.FileMode {
	t.Helper()
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return st.Mode().Perm()
}

// TestInstallScript: install.sh into a temporary root with a local agent
// binary, against a live console over TLS with its CA pinned; the host
// comes online with the agent it installed. Then the service unit for that
// install, a refused second enrolment and an upgrade in place.
func TestInstallScript(t *testing.T) {
	s := newServer(t)
	h := s.createHost("installed")
	_, agentBin := binaries(t)
	p := instLayout(t.TempDir())

	out, err := runInstallSh(t, nil, "--server", s.URL(""), "--token", h.EnrollToken, "--ca-fingerprint", s.CAFingerprint,
		"--prefix", p.prefix, "--binary", agentBin, "--restic", testenv.Restic(t), "--no-service")
	if err != nil {
		t.Fatalf("install.sh: %v\n%s", err, out)
	}
	t.Logf("install.sh:\n%s", out)
	if m := instMode(t, p.agent); m != 0o755 {
		t.Errorf("agent binary mode %04o, want 0755", m)
	}
	if m := instMode(t, p.config); m != 0o600 {
		t.Errorf("config mode %04o, want 0600", m)
	}
	if m := instMode(t, filepath.Dir(p.config)); m != 0o700 {
		t.Errorf("config directory mode %04o, want 0700", m)
	}
	cfg, err := os.ReadFile(p.config)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "host_id: "+h.ID+"\n") || !strings.Contains(string(cfg), s.CAFingerprint) {
		t.Errorf("config does not name host %s with the pinned CA:\n%s", h.ID, cfg)
	}
	if strings.Contains(out, h.EnrollToken) {
		t.Error("install.sh printed the enrolment token")
	}
	if !strings.Contains(out, "host "+h.ID) {
		t.Errorf("install.sh did not report the host ID")
	}

	// --no-service leaves starting to us: the installed agent, run the way
	// the service would run it, brings the host online.
	a := start(t, "installed-agent", nil, p.agent, "run", "--config", p.config)
	s.waitOnline(h.ID, true)

	// The unit "service install" would write for this install.
	unitOut, err := exec.Command(p.agent, "service", "unit", "--config", p.config).Output()
	if err != nil {
		t.Fatalf("service unit: %v", err)
	}
	unit := string(unitOut)
	if want := "ExecStart=" + p.agent + " run --config " + p.config + "\n"; !strings.Contains(unit, want) {
		t.Errorf("unit lacks %q:\n%s", want, unit)
	}
	if sa, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Logf("systemd-analyze not found (%v): skipping only the systemd verification of the unit", err)
	} else {
		unitPath := filepath.Join(t.TempDir(), "restic-manager-agent.service")
		if err := os.WriteFile(unitPath, unitOut, 0o644); err != nil {
			t.Fatal(err)
		}
		if out, err := exec.Command(sa, "verify", unitPath).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify: %v\n%s\n%s", err, out, unit)
		}
	}

	// The same token again: refused before anything changes.
	before, _ := os.ReadFile(p.config)
	out, err = runInstallSh(t, nil, "--server", s.URL(""), "--token", h.EnrollToken, "--prefix", p.prefix, "--binary", agentBin, "--no-service")
	if err == nil || !strings.Contains(out, "already enrolled") {
		t.Errorf("second enrolment: %v\n%s", err, out)
	}
	// Without a token: an upgrade that keeps the enrolment. The running
	// agent keeps its old file (replaced by rename) and the host stays up.
	out, err = runInstallSh(t, nil, "--prefix", p.prefix, "--binary", agentBin, "--no-service")
	if err != nil || !strings.Contains(out, "keeping the existing enrolment") {
		t.Fatalf("upgrade: %v\n%s", err, out)
	}
	if after, _ := os.ReadFile(p.config); !bytes.Equal(before, after) {
		t.Error("the upgrade changed the config")
	}
	stop(t, a)
	s.waitOnline(h.ID, false)
	start(t, "upgraded-agent", nil, p.agent, "run", "--config", p.config)
	s.waitOnline(h.ID, true)
}

// instProxy stands in for the console's download route
// (/downloads/restic-manager-agent-OS-ARCH) in front of a live console,
// with the console's own certificate, counting downloads, and passes
// everything else (the scripts, enrolment) to the console.
type instProxy struct {
	srv       *httptest.Server
	downloads atomic.Int32
}

func newInstProxy(t *testing.T, s *server, agentBin string) *instProxy {
	t.Helper()
	tlsDir := filepath.Join(s.Data, "tls")
	pair, err := tls.LoadX509KeyPair(filepath.Join(tlsDir, "server.pem"), filepath.Join(tlsDir, "server.key"))
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(caPEM)
	if blk == nil {
		t.Fatal("ca.pem holds no PEM block")
	}
	// The console sends its CA after its certificate; so does the proxy.
	pair.Certificate = append(pair.Certificate[:1:1], blk.Bytes)
	target, _ := url.Parse(s.URL(""))
	rp := httputil.NewSingleHostReverseProxy(target)
	rp.Transport = &http.Transport{TLSClientConfig: s.TLSConfig()}

	p := &instProxy{}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /downloads/{name}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("name") != "restic-manager-agent-linux-"+runtime.GOARCH {
			http.NotFound(w, r)
			return
		}
		p.downloads.Add(1)
		http.ServeFile(w, r, agentBin)
	})
	mux.Handle("/", rp)
	p.srv = httptest.NewUnstartedServer(mux)
	p.srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	p.srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	p.srv.StartTLS()
	t.Cleanup(p.srv.Close)
	return p
}

// instPATH is a directory holding links to the programs install.sh uses,
// with or without curl and wget, to run it as on a machine that has only
// one of them, or neither.
func instPATH(t *testing.T, downloaders ...string) string {
	t.Helper()
	dir := t.TempDir()
	tools := []string{"uname", "id", "mktemp", "rm", "cp", "chmod", "mv", "mkdir", "sed", "tr", "cut",
		"awk", "sleep", "cat", "base64", "sha256sum", "openssl"}
	for _, name := range append(tools, downloaders...) {
		path, err := exec.LookPath(name)
		if err != nil {
			if name == "openssl" { // install.sh falls back to base64
				continue
			}
			t.Fatalf("install.sh needs %s, which this machine lacks: %v", name, err)
		}
		if err := os.Symlink(path, filepath.Join(dir, name)); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

// TestInstallScriptDownloads: the download path of install.sh as the
// console serves it (carrying the console's CA), with curl and then with
// wget: the CA is checked against the pinned fingerprint and is the only
// one trusted for the agent's download. A wrong fingerprint and a machine
// with neither tool fail clearly. The script from the source tree carries
// no CA: the private CA is then refused like any unknown one, unless
// --ca-file gives it.
func TestInstallScriptDownloads(t *testing.T) {
	s := newServer(t)
	_, agentBin := binaries(t)
	want, err := os.ReadFile(agentBin)
	if err != nil {
		t.Fatal(err)
	}
	proxy := newInstProxy(t, s, agentBin)
	served := filepath.Join(t.TempDir(), "install.sh")
	if err := os.WriteFile(served, servedScript(t, s), 0o644); err != nil {
		t.Fatal(err)
	}
	runServed := func(env []string, args ...string) (string, error) {
		t.Helper()
		cmd := exec.Command("/bin/sh", append([]string{served}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}

	for i, tool := range []string{"curl", "wget"} {
		t.Run(tool, func(t *testing.T) {
			h := s.createHost("dl-" + tool)
			p := instLayout(t.TempDir())
			out, err := runServed([]string{"PATH=" + instPATH(t, tool)},
				"--server", proxy.srv.URL, "--token", h.EnrollToken, "--ca-fingerprint", strings.ToUpper(s.CAFingerprint),
				"--prefix", p.prefix, "--restic", testenv.Restic(t), "--no-service")
			if err != nil {
				t.Fatalf("install.sh with %s: %v\n%s", tool, err, out)
			}
			if n := proxy.downloads.Load(); n != int32(i+1) {
				t.Fatalf("%d downloads after the %s run\n%s", n, tool, out)
			}
			got, err := os.ReadFile(p.agent)
			if err != nil || !bytes.Equal(got, want) {
				t.Fatalf("installed agent differs from the served one (%v)", err)
			}
			start(t, "agent-"+tool, nil, p.agent, "run", "--config", p.config)
			s.waitOnline(h.ID, true)
		})
	}

	h := s.createHost("dl-refused")
	p := instLayout(t.TempDir())
	wrongFP := strings.Repeat("ab", 32)
	out, err := runServed([]string{"PATH=" + instPATH(t, "curl")},
		"--server", proxy.srv.URL, "--token", h.EnrollToken, "--ca-fingerprint", wrongFP, "--prefix", p.prefix, "--no-service")
	if err == nil || !strings.Contains(out, "refusing to trust it") {
		t.Errorf("a CA with another fingerprint was trusted: %v\n%s", err, out)
	}
	out, err = runServed([]string{"PATH=" + instPATH(t)},
		"--server", proxy.srv.URL, "--token", h.EnrollToken, "--ca-fingerprint", s.CAFingerprint, "--prefix", p.prefix, "--no-service")
	if err == nil || !strings.Contains(out, "neither curl nor wget") {
		t.Errorf("without curl and wget: %v\n%s", err, out)
	}
	// The source tree's script, no CA given: curl refuses the private CA.
	out, err = runInstallSh(t, []string{"PATH=" + instPATH(t, "curl")},
		"--server", proxy.srv.URL, "--token", h.EnrollToken, "--ca-fingerprint", s.CAFingerprint, "--prefix", p.prefix, "--no-service")
	if err == nil || !strings.Contains(out, "pass --ca-file") {
		t.Errorf("the source tree's script without --ca-file: %v\n%s", err, out)
	}
	if _, err := os.Stat(p.agent); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("failed runs installed an agent: %v", err)
	}
	if n := proxy.downloads.Load(); n != 2 {
		t.Errorf("%d downloads after the failed runs, want 2", n)
	}
	// With --ca-file it downloads through that CA.
	hf := s.createHost("dl-ca-file")
	pf := instLayout(t.TempDir())
	out, err = runInstallSh(t, []string{"PATH=" + instPATH(t, "curl")},
		"--server", proxy.srv.URL, "--token", hf.EnrollToken, "--ca-fingerprint", s.CAFingerprint,
		"--ca-file", filepath.Join(s.Data, "tls", "ca.pem"), "--prefix", pf.prefix, "--no-service")
	if err != nil {
		t.Errorf("the source tree's script with --ca-file: %v\n%s", err, out)
	}
	if n := proxy.downloads.Load(); n != 3 {
		t.Errorf("%d downloads in all, want 3", n)
	}
	// The token was not spent by the failed runs.
	if _, err := runInstallSh(t, nil, "--server", s.URL(""), "--token", h.EnrollToken, "--ca-fingerprint", s.CAFingerprint,
		"--prefix", p.prefix, "--binary", agentBin, "--no-service"); err != nil {
		t.Errorf("enrolling after the failed runs: %v", err)
	}
}

// TestAgentServiceForeground: "run" goes through the kardianos/service
// wrapper (Start/Stop) in the foreground. SIGTERM in the middle of a backup
// stops it cleanly: exit status 0, the job cancelled and journalled as
// done, the console told the host is offline, the log file written. A
// restart reports the job cancelled and runs nothing again.
func TestAgentServiceForeground(t *testing.T) {
	// A "backup" that runs until it is interrupted (the restic wrapper
	// becomes sleep, which SIGINT ends at once); everything else is restic.
	wrapper := filepath.Join(t.TempDir(), "restic-hangs-on-backup")
	script := "#!/bin/sh\ncase \" $* \" in *\" backup \"*) exec sleep 120;; esac\nexec " + testenv.Restic(t) + " \"$@\"\n"
	if err := os.WriteFile(wrapper, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	f := newFleet(t, wrapper)
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	if out := f.agent.Proc.Output(); !strings.Contains(out, "service_manager=") || !strings.Contains(out, "interactive=true") {
		t.Fatalf("the agent did not start through the service wrapper:\n%s", out)
	}
	f.initRepo(t)
	src := makeTree(t, 5)
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	eventually(t, time.Minute, "the backup running", func() error {
		if j := f.srv.job(id); j.Status != "running" {
			return errorf("status %s", j.Status)
		}
		return nil
	})

	t0 := time.Now()
	if err := f.agent.Proc.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-f.agent.Proc.Done():
	case <-time.After(90 * time.Second):
		t.Fatal("the agent did not stop after SIGTERM")
	}
	if code := f.agent.Proc.ExitCode(); code != 0 {
		t.Fatalf("exit status %d after SIGTERM, want 0\n%s", code, f.agent.Proc.Output())
	}
	if d := time.Since(t0); d > 30*time.Second {
		t.Errorf("the stop took %s", d)
	}
	f.srv.waitOnline(f.host.ID, false)

	state := filepath.Join(filepath.Dir(f.agent.Config), "state")
	journal := func() map[string][]byte {
		files, _ := filepath.Glob(filepath.Join(state, "jobs", "*.json"))
		m := map[string][]byte{}
		for _, p := range files {
			b, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			m[filepath.Base(p)] = b
		}
		return m
	}
	before := journal()
	if len(before) < 2 || before[id+".json"] == nil {
		t.Fatalf("journal after the stop holds %d entries, want the init and the backup job at least", len(before))
	}
	for name, b := range before {
		var entry struct {
			State string `json:"state"`
		}
		if err := json.Unmarshal(b, &entry); err != nil || entry.State != "done" {
			t.Errorf("journal entry %s: %s (%v), want state done", name, b, err)
		}
	}
	logText, err := os.ReadFile(filepath.Join(state, "agent.log"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"agent starting", "agent stopped"} {
		if !strings.Contains(string(logText), want) {
			t.Errorf("agent.log lacks %q:\n%s", want, logText)
		}
	}

	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	if j := f.srv.waitJob(id, time.Minute); j.Status != "cancelled" {
		t.Errorf("the backup interrupted by the stop ended %s (%s), want cancelled", j.Status, j.Error)
	}
	time.Sleep(2 * time.Second) // time for a (wrong) rerun to show
	// What was journalled before the stop is left as it was: nothing ran
	// again. (The console may have sent new jobs since, such as a health
	// refresh after the cancelled backup.)
	after := journal()
	for name, b := range before {
		if !bytes.Equal(after[name], b) {
			t.Errorf("the restart changed journal entry %s:\nbefore %s\nafter  %s", name, b, after[name])
		}
	}
	var list []harness.Job
	f.srv.do("GET", "/api/v1/jobs?limit=500&host_id="+f.host.ID, nil, &list, 200)
	backups := 0
	for _, j := range list {
		if j.Kind == "backup" {
			backups++
		}
	}
	if backups != 1 {
		t.Errorf("%d backup jobs after the restart, want 1: %+v", backups, list)
	}
}

// instSnapshot is what must survive backup-store and restore-store: the
// stable fields of hosts, repositories, schedules and jobs.
type instSnapshot struct {
	Hosts     []map[string]any
	Repos     []map[string]any
	Schedules map[string]any
	Jobs      []map[string]any
}

func pick(m map[string]any, keys ...string) map[string]any {
	out := map[string]any{}
	for _, k := range keys {
		out[k] = m[k]
	}
	return out
}

func takeSnapshot(s *server, hostID string) instSnapshot {
	var snap instSnapshot
	var hosts, repos, jobs []map[string]any
	var sched map[string]any
	s.do("GET", "/api/v1/hosts", nil, &hosts, 200)
	s.do("GET", "/api/v1/repos", nil, &repos, 200)
	s.do("GET", "/api/v1/hosts/"+hostID+"/schedules", nil, &sched, 200)
	s.do("GET", "/api/v1/jobs?limit=500", nil, &jobs, 200)
	for _, h := range hosts {
		snap.Hosts = append(snap.Hosts, pick(h, "id", "name", "os", "schedule_version_desired"))
	}
	for _, r := range repos {
		snap.Repos = append(snap.Repos, pick(r, "id", "name", "display_url"))
	}
	snap.Schedules = pick(sched, "version")
	list, _ := sched["schedules"].([]any)
	var scheds []any
	for _, x := range list {
		m, _ := x.(map[string]any)
		scheds = append(scheds, pick(m, "id", "name", "kind", "cron", "enabled", "repo_id", "paths"))
	}
	snap.Schedules["schedules"] = scheds
	for _, j := range jobs {
		snap.Jobs = append(snap.Jobs, pick(j, "id", "host_id", "repo_id", "kind", "status", "actor", "created_at", "ended_at"))
	}
	return snap
}

// TestBackupStoreAndRestore: an online backup of a running console's store
// through its API, a restore into an empty data directory, and a console
// started on it holds the same hosts, repositories, schedules and jobs; the
// agent, pinned to the restored CA, comes back online with its credential.
// The offline path (server stopped) is checked on the way.
func TestBackupStoreAndRestore(t *testing.T) {
	f := newFleet(t, "")
	s := f.srv
	f.agent.start(t)
	s.waitOnline(f.host.ID, true)
	f.initRepo(t)
	s.putSchedules(f.host.ID, []map[string]any{{
		"name": "nightly", "kind": "backup", "cron": "0 2 * * *", "timezone": "UTC", "enabled": true,
		"repo_id": f.repoID, "paths": []string{"/etc"},
	}})
	s.waitApplied(f.host.ID, 1)
	s.createHost("not-enrolled")
	// Jobs the console starts by itself (a health refresh after the init)
	// end first, so that the snapshot does not move under the backup.
	eventually(t, 2*time.Minute, "every job ended", func() error {
		var list []harness.Job
		s.do("GET", "/api/v1/jobs?limit=500", nil, &list, 200)
		for _, j := range list {
			if !harness.Terminal(j.Status) {
				return errorf("job %s (%s) is %s", j.ID, j.Kind, j.Status)
			}
		}
		return nil
	})
	orig := takeSnapshot(s, f.host.ID)
	if len(orig.Hosts) != 2 || len(orig.Repos) != 1 || len(orig.Jobs) < 1 {
		t.Fatalf("fixture: %+v", orig)
	}

	serverBin, _ := binaries(t)
	var tok struct {
		Token string `json:"token"`
	}
	s.do("POST", "/api/v1/tokens", map[string]string{"name": "store-backup"}, &tok, 201)
	backupCmd := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(serverBin, append([]string{"backup-store"}, args...)...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	dir := t.TempDir()

	// Online, with the token from the environment and the CA pinned.
	online := filepath.Join(dir, "online.bak")
	if out, err := backupCmd([]string{"RM_TOKEN=" + tok.Token}, online, "--server", s.URL(""), "--ca-fingerprint", s.CAFingerprint); err != nil {
		t.Fatalf("backup-store: %v\n%s", err, out)
	} else if !strings.Contains(out, "through the API") {
		t.Errorf("backup-store output: %s", out)
	}
	// With --data while the server runs: Badger's lock sends it to the API,
	// trusting DATA/tls/ca.pem.
	viaData := filepath.Join(dir, "via-data.bak")
	if out, err := backupCmd(nil, viaData, "--data", s.Data, "--server", s.URL(""), "--token", tok.Token); err != nil || !strings.Contains(out, "through the API") {
		t.Fatalf("backup-store --data with the server running: %v\n%s", err, out)
	}
	// Refusals: no token, a wrong token.
	if out, err := backupCmd([]string{"RM_TOKEN="}, filepath.Join(dir, "x.bak"), "--server", s.URL(""), "--ca-fingerprint", s.CAFingerprint); err == nil || !strings.Contains(out, "token") {
		t.Errorf("backup-store without a token: %v\n%s", err, out)
	}
	if out, err := backupCmd(nil, filepath.Join(dir, "y.bak"), "--server", s.URL(""), "--ca-fingerprint", s.CAFingerprint, "--token", "rmt_wrong"); err == nil || !strings.Contains(out, "401") {
		t.Errorf("backup-store with a wrong token: %v\n%s", err, out)
	}

	// The whole old server goes away; offline backup of its data directory.
	stop(t, f.agent.Proc)
	stop(t, s.Proc)
	offline := filepath.Join(dir, "offline.bak")
	if out, err := backupCmd(nil, offline, "--data", s.Data); err != nil || !strings.Contains(out, "the server is stopped") {
		t.Fatalf("offline backup-store: %v\n%s", err, out)
	}

	restore := func(backup, data string) {
		t.Helper()
		out, err := exec.Command(serverBin, "restore-store", backup, "--data", data,
			"--master-key", filepath.Join(s.Data, "store", "master.key"), "--tls", filepath.Join(s.Data, "tls")).CombinedOutput()
		if err != nil {
			t.Fatalf("restore-store %s: %v\n%s", filepath.Base(backup), err, out)
		}
	}
	// Restoring needs the old master key.
	bad := filepath.Join(dir, "other.key")
	if err := os.WriteFile(bad, bytes.Repeat([]byte{7}, 32), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(serverBin, "restore-store", online, "--data", filepath.Join(dir, "bad"), "--master-key", bad).CombinedOutput(); err == nil || !strings.Contains(string(out), "master key") {
		t.Errorf("restore-store with another key: %v\n%s", err, out)
	}

	// The online backup, restored, on the old addresses: the agent's
	// config (broker URL, pinned CA, credential) works unchanged.
	moved := filepath.Join(dir, "moved")
	restore(online, moved)
	s2 := startServer(t, moved, s.HTTPAddr, s.MQTTAddr)
	if s2.CAFingerprint != s.CAFingerprint {
		t.Errorf("restored server has CA %s, want %s", s2.CAFingerprint, s.CAFingerprint)
	}
	if got := takeSnapshot(s2, f.host.ID); !reflect.DeepEqual(got, orig) {
		t.Errorf("after restore:\n%+v\nwant\n%+v", got, orig)
	}
	// The store still says "online" from before the move, so only a job
	// the agent runs proves it reconnected.
	f.agent.start(t)
	src := makeTree(t, 5)
	id := s2.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID, "args": map[string]any{"paths": []string{src}}})
	if j := s2.waitJob(id, 2*time.Minute); j.Status != "succeeded" {
		t.Fatalf("backup after the move: %s: %s %s", j.Status, j.Error, j.StderrTail)
	}
	stop(t, f.agent.Proc)
	stop(t, s2.Proc)

	// The other two backups restore to the same records.
	for _, b := range []string{viaData, offline} {
		data := filepath.Join(dir, "from-"+strings.TrimSuffix(filepath.Base(b), ".bak"))
		restore(b, data)
		s3 := startServer(t, data, testenv.FreePort(t), testenv.FreePort(t))
		if got := takeSnapshot(s3, f.host.ID); !reflect.DeepEqual(got, orig) {
			t.Errorf("after restoring %s:\n%+v\nwant\n%+v", filepath.Base(b), got, orig)
		}
		stop(t, s3.Proc)
	}
}
