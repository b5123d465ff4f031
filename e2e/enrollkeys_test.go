package e2e

// Enrolment keys with the real processes: a key made through the API, the
// real agent enrolling with it (by itself, through install.sh, and through
// the console's one-line installer), and the host it made coming online
// with the key's labels and its own.

import (
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// enrollKeyMade is the answer to POST /enroll-keys.
type enrollKeyMade struct {
	ID              string            `json:"id"`
	Key             string            `json:"key"`
	Labels          map[string]string `json:"labels"`
	EnrollCommand   string            `json:"enroll_command"`
	InstallCommands map[string]string `json:"install_commands"`
}

func (s *server) createEnrollKey(body map[string]any) enrollKeyMade {
	s.t.Helper()
	var k enrollKeyMade
	s.do("POST", "/api/v1/enroll-keys", body, &k, 201)
	if !strings.HasPrefix(k.Key, "rmk_") {
		s.t.Fatalf("enrolment key %+v", k)
	}
	return k
}

// enrollKeyUses reads a key's use count from GET /enroll-keys.
func (s *server) enrollKeyUses(id string) int {
	s.t.Helper()
	var keys []struct {
		ID   string `json:"id"`
		Uses int    `json:"uses"`
	}
	s.do("GET", "/api/v1/enroll-keys", nil, &keys, 200)
	for _, k := range keys {
		if k.ID == id {
			return k.Uses
		}
	}
	s.t.Fatalf("key %s is not listed", id)
	return 0
}

// hostLabels reads a host's name and labels from GET /hosts/{id}.
func (s *server) hostLabels(id string) (string, map[string]string) {
	s.t.Helper()
	var h struct {
		Name   string            `json:"name"`
		Labels map[string]string `json:"labels"`
	}
	s.do("GET", "/api/v1/hosts/"+id, nil, &h, 200)
	return h.Name, h.Labels
}

var configHostID = regexp.MustCompile(`(?m)^host_id: *(\S+)$`)

// configuredHost is the host ID an agent's config names.
func configuredHost(t *testing.T, config string) string {
	t.Helper()
	b, err := os.ReadFile(config)
	if err != nil {
		t.Fatal(err)
	}
	m := configHostID.FindSubmatch(b)
	if m == nil {
		t.Fatalf("%s names no host:\n%s", config, b)
	}
	return string(m[1])
}

// TestEnrollKeyAgent: `restic-manager-agent enroll --key … --labels
// role=web` makes a host of its own, which comes online with the key's
// labels and the agent's; the key counts the use, and once deleted
// enrols nothing more.
func TestEnrollKeyAgent(t *testing.T) {
	s := newServer(t)
	_, agentBin := binaries(t)
	k := s.createEnrollKey(map[string]any{"name": "web rollout", "labels": map[string]string{"env": "prod", "role": "db"}, "max_uses": 3, "expires_in": "1h"})

	config := filepath.Join(t.TempDir(), "agent.yaml")
	out, err := exec.Command(agentBin, "enroll", "--server", s.URL(""), "--key", k.Key, "--name", "web-e2e", "--labels", "role=web,site=berlin",
		"--ca-fingerprint", s.CAFingerprint, "--config", config, "--restic", testenv.Restic(t)).CombinedOutput()
	if err != nil {
		t.Fatalf("enroll --key: %v\n%s", err, out)
	}
	id := configuredHost(t, config)
	if !strings.Contains(string(out), "enrolled as host "+id) {
		t.Errorf("enroll said: %s", out)
	}
	a := &agentProc{&harness.Agent{Bin: agentBin, Config: config, Restic: testenv.Restic(t)}}
	a.start(t)
	s.waitOnline(id, true)
	name, labels := s.hostLabels(id)
	if want := map[string]string{"env": "prod", "role": "db", "site": "berlin"}; name != "web-e2e" || !maps.Equal(labels, want) {
		t.Errorf("host %q labels %v, want web-e2e %v (the key's role wins)", name, labels, want)
	}
	if n := s.enrollKeyUses(k.ID); n != 1 {
		t.Errorf("the key counts %d uses, want 1", n)
	}

	// Deleted: the next machine is refused, and says why.
	s.do("DELETE", "/api/v1/enroll-keys/"+k.ID, nil, nil, 204)
	out, err = exec.Command(agentBin, "enroll", "--server", s.URL(""), "--key", k.Key, "--ca-fingerprint", s.CAFingerprint,
		"--config", filepath.Join(t.TempDir(), "agent.yaml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "the enrolment key is unknown or was deleted") {
		t.Errorf("enrol with a deleted key: %v\n%s", err, out)
	}
	// The host it made stays online.
	if !s.host(id).Online {
		t.Error("deleting the key took the host it made offline")
	}
}

// TestInstallWithEnrollKey: the console's key-based one-line installer,
// run as given (the real curl, the served install.sh, a stand-in sudo),
// enrols a machine as a new host with the key's labels; install.sh --key
// with --name and --labels enrols a second one with the same key, and the
// host comes online. A key that forbids agent labels refuses --labels.
func TestInstallWithEnrollKey(t *testing.T) {
	_, agentBin := binaries(t)
	downloads := t.TempDir()
	if err := os.Symlink(agentBin, filepath.Join(downloads, "restic-manager-agent-linux-"+runtime.GOARCH)); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, "--downloads", downloads)
	k := s.createEnrollKey(map[string]any{"name": "fleet", "labels": map[string]string{"role": "web"}, "max_uses": 2, "expires_in": "1h"})
	line := k.InstallCommands["linux"]
	if !strings.Contains(line, "| curl -fsSL --cacert /dev/stdin "+s.URL("/install.sh")+" | sudo sh -s -- --server "+s.URL("")+" --key "+k.Key+" --ca-fingerprint "+s.CAFingerprint) {
		t.Fatalf("the key's linux line: %s", line)
	}
	if !strings.Contains(k.InstallCommands["windows"], " -Key "+k.Key+" -CaFingerprint "+s.CAFingerprint) {
		t.Errorf("the key's windows line: %s", k.InstallCommands["windows"])
	}

	// The one-liner, as given.
	sudo, dir := fakeSudo(t)
	out, errOut, code := runLine(t, sudo, line)
	if code != 0 {
		t.Fatalf("the line: exit %d\n%s%s", code, out, errOut)
	}
	if strings.Contains(errOut, k.Key) {
		t.Error("install.sh printed the enrolment key")
	}
	first := configuredHost(t, instLayout(filepath.Join(dir, "root")).config)
	if _, labels := s.hostLabels(first); !maps.Equal(labels, map[string]string{"role": "web"}) {
		t.Errorf("host made by the line: labels %v", labels)
	}

	// install.sh --key with a name and labels of its own.
	p := instLayout(t.TempDir())
	out, err := runInstallSh(t, nil, "--server", s.URL(""), "--key", k.Key, "--name", "web-2", "--labels", "site=berlin",
		"--ca-fingerprint", s.CAFingerprint, "--prefix", p.prefix, "--binary", agentBin, "--restic", testenv.Restic(t), "--no-service")
	if err != nil {
		t.Fatalf("install.sh --key: %v\n%s", err, out)
	}
	if m := instMode(t, p.config); m != 0o600 {
		t.Errorf("config mode %04o, want 0600", m)
	}
	second := configuredHost(t, p.config)
	if second == first || !strings.Contains(out, "host "+second) || strings.Contains(out, k.Key) {
		t.Errorf("install.sh --key made host %s (first %s):\n%s", second, first, out)
	}
	start(t, "key-agent", nil, p.agent, "run", "--config", p.config)
	s.waitOnline(second, true)
	if name, labels := s.hostLabels(second); name != "web-2" || !maps.Equal(labels, map[string]string{"role": "web", "site": "berlin"}) {
		t.Errorf("host made by install.sh --key: %q %v", name, labels)
	}

	// The key made its two hosts: a third machine is refused.
	out, err = runInstallSh(t, nil, "--server", s.URL(""), "--key", k.Key, "--ca-fingerprint", s.CAFingerprint,
		"--prefix", t.TempDir(), "--binary", agentBin, "--no-service")
	if err == nil || !strings.Contains(out, `the enrolment key "fleet" is used up`) {
		t.Errorf("a third machine with a 2-use key: %v\n%s", err, out)
	}

	// A key that gives its own labels only refuses --labels.
	strict := s.createEnrollKey(map[string]any{"name": "strict", "labels": map[string]string{"role": "db"}, "expires_in": "1h", "allow_agent_labels": false})
	out, err = runInstallSh(t, nil, "--server", s.URL(""), "--key", strict.Key, "--labels", "role=web", "--ca-fingerprint", s.CAFingerprint,
		"--prefix", t.TempDir(), "--binary", agentBin, "--no-service")
	if err == nil || !strings.Contains(out, "this enrolment key gives its own labels only") {
		t.Errorf("--labels with a key that forbids them: %v\n%s", err, out)
	}
}
