package main

import (
	"errors"
	"flag"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

var updateUnit = flag.Bool("update-unit", false, "rewrite deploy/systemd/restic-manager-agent.service from systemdUnit")

// deploy/systemd/restic-manager-agent.service is exactly the unit that
// "service install" writes for the default paths, so that operators can
// read (or install by hand) what the agent would install.
func TestSystemdUnitMatchesDeployCopy(t *testing.T) {
	got, err := systemdUnit("/usr/local/bin/restic-manager-agent", "/etc/restic-manager/agent.yaml")
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join("..", "..", "deploy", "systemd", "restic-manager-agent.service")
	if *updateUnit {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if got != string(want) {
		t.Errorf("%s differs from systemdUnit's output (go test ./cmd/restic-manager-agent -run DeployCopy -update-unit):\n%s", path, got)
	}
	for _, line := range []string{
		"ExecStart=/usr/local/bin/restic-manager-agent run --config /etc/restic-manager/agent.yaml\n",
		"After=network-online.target\n",
		"Wants=network-online.target\n",
		"Restart=on-failure\n",
		"KillMode=mixed\n",
		"WantedBy=multi-user.target\n",
	} {
		if !strings.Contains(got, line) {
			t.Errorf("unit lacks %q", line)
		}
	}
}

func TestSystemdQuote(t *testing.T) {
	for _, tc := range []struct {
		in   string
		exe  bool
		want string
	}{
		{"/usr/local/bin/restic-manager-agent", true, "/usr/local/bin/restic-manager-agent"},
		{"--config", false, "--config"},
		{"/etc/a b/agent.yaml", false, `"/etc/a b/agent.yaml"`},
		{"/srv/50%/x", false, `"/srv/50%%/x"`},
		{"/srv/$HOME/x", false, `"/srv/$$HOME/x"`},
		{"/srv/$HOME/x", true, `"/srv/$HOME/x"`}, // the program's name is not expanded
		{`/srv/it's "q" \x`, false, `"/srv/it's \"q\" \\x"`},
		{"", false, `""`},
	} {
		got, err := systemdQuote(tc.in, tc.exe)
		if err != nil || got != tc.want {
			t.Errorf("systemdQuote(%q, %v) = %q, %v; want %q", tc.in, tc.exe, got, err, tc.want)
		}
	}
	for _, tc := range []struct {
		in  string
		exe bool
	}{
		{"/a\nb", false},
		{"/a\x00b", false},
		{`/opt/a"b/agent`, true},
		{`/opt/a\b/agent`, true},
		{`/opt/it's/agent`, true},
	} {
		if got, err := systemdQuote(tc.in, tc.exe); err == nil {
			t.Errorf("systemdQuote(%q, %v) = %q, want an error", tc.in, tc.exe, got)
		}
	}
	if _, err := systemdUnit("bin/agent", "/etc/x.yaml"); err == nil {
		t.Error("a relative executable was accepted")
	}
	if _, err := systemdUnit("/opt/{{x}}/agent", "/etc/x.yaml"); err == nil {
		t.Error("a path with template braces was accepted")
	}
}

// The unit for awkward paths is valid for systemd itself: systemd-analyze
// verify parses it, checks the program is executable and reports the
// program path as it unquoted it.
func TestSystemdUnitVerifies(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a 100% $odd dir")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(dir, "restic-manager-agent")
	if err := os.WriteFile(exe, []byte("#!/bin/sh\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	config := filepath.Join(dir, `it's "quoted"`, `a\b %i $HOME.yaml`)
	unit, err := systemdUnit(exe, config)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Count(unit, "ExecStart=") != 1 {
		t.Fatalf("unit:\n%s", unit)
	}
	sa, err := exec.LookPath("systemd-analyze")
	if err != nil {
		// Only this step needs systemd's tools; the rendering above ran.
		t.Logf("systemd-analyze not found (%v): the unit's syntax is not verified by systemd on this machine", err)
		return
	}
	unitPath := filepath.Join(t.TempDir(), serviceName+".service")
	if err := os.WriteFile(unitPath, []byte(unit), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(sa, "verify", unitPath).CombinedOutput(); err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s\nunit:\n%s", err, out, unit)
	}
	// With the program missing, systemd names the path it parsed: the
	// quoting round-trips.
	if err := os.Remove(exe); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(sa, "verify", unitPath).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Command "+exe+" is not executable") {
		t.Fatalf("systemd-analyze verify with the program missing: %v\n%s", err, out)
	}
}

// buildAgent builds this command once per test that needs the real binary.
func buildAgent(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "restic-manager-agent")
	if out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

// An agent that fails by itself (here: enrolled config, but its key is
// gone) exits 1 through the service wrapper, so that systemd's
// Restart=on-failure restarts it, and says why on stderr and in its log.
func TestRunFailureExitsNonZero(t *testing.T) {
	bin := buildAgent(t)
	dir := t.TempDir()
	config := filepath.Join(dir, "agent.yaml")
	yaml := "host_id: host-01hzy3k5m7n9p1q3r5s7t9v1w3\nbroker_url: mqtt://127.0.0.1:1\nusername: host-01hzy3k5m7n9p1q3r5s7t9v1w3\npassword: x\n"
	if err := os.WriteFile(config, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin, "run", "--config", config)
	out, err := cmd.CombinedOutput()
	var ee *exec.ExitError
	if !errors.As(err, &ee) || ee.ExitCode() != 1 {
		t.Fatalf("run without a key: %v, want exit status 1\n%s", err, out)
	}
	if !strings.Contains(string(out), "run enroll first") {
		t.Errorf("output does not say why:\n%s", out)
	}
	logText, err := os.ReadFile(filepath.Join(dir, "state", "agent.log"))
	if err != nil || !strings.Contains(string(logText), "agent failed") {
		t.Errorf("agent.log: %v\n%s", err, logText)
	}

	// A config that does not load fails before anything starts.
	out, err = exec.Command(bin, "run", "--config", filepath.Join(dir, "missing.yaml")).CombinedOutput()
	if !errors.As(err, &ee) || ee.ExitCode() != 1 || !strings.Contains(string(out), "missing.yaml") {
		t.Errorf("run with a missing config: %v\n%s", err, out)
	}
}

// "service install" refuses a config the agent could not start with.
func TestServiceInstallNeedsAConfig(t *testing.T) {
	bin := buildAgent(t)
	out, err := exec.Command(bin, "service", "install", "--config", filepath.Join(t.TempDir(), "none.yaml")).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "none.yaml") {
		t.Errorf("service install without a config: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "service", "bogus").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "unknown action") {
		t.Errorf("service bogus: %v\n%s", err, out)
	}
	out, err = exec.Command(bin, "service").CombinedOutput()
	if err == nil || !strings.Contains(string(out), "Usage: restic-manager-agent service") {
		t.Errorf("service without an action: %v\n%s", err, out)
	}
}
