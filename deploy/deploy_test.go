// Package deploy holds no code: its test keeps the deployment files (the
// Dockerfile, the compose file, the systemd units) in step with the
// programs they run.
package deploy

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/restic-manager/restic-manager/agent"
	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/internal/tlsutil"
)

// execStart returns the words of a unit's ExecStart line (the units here
// quote nothing).
func execStart(t *testing.T, unit string) []string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("systemd", unit))
	if err != nil {
		t.Fatal(err)
	}
	for line := range strings.SplitSeq(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "ExecStart="); ok {
			return strings.Fields(v)
		}
	}
	t.Fatalf("%s has no ExecStart", unit)
	return nil
}

// flagNames picks "--name" and "--name=value" words out of a command line.
func flagNames(words []string) []string {
	var out []string
	for _, w := range words {
		if strings.HasPrefix(w, "-") {
			name, _, _ := strings.Cut(strings.TrimLeft(w, "-"), "=")
			out = append(out, name)
		}
	}
	return out
}

// helpOf runs a program's help and returns what it printed.
func helpOf(t *testing.T, bin string, args ...string) string {
	t.Helper()
	out, _ := exec.Command(bin, args...).CombinedOutput() // -h exits non-zero
	if len(out) == 0 {
		t.Fatalf("%s %v printed nothing", bin, args)
	}
	return string(out)
}

func checkFlags(t *testing.T, where, help string, flags []string) {
	t.Helper()
	if len(flags) == 0 {
		t.Errorf("%s: no flags found", where)
	}
	for _, f := range flags {
		if !regexp.MustCompile(`(?m)^\s+--?` + regexp.QuoteMeta(f) + `\b`).MatchString(help) {
			t.Errorf("%s passes --%s, which the program does not know:\n%s", where, f, help)
		}
	}
}

// Every flag the deployment files pass exists in the programs they start.
func TestDeployFilesUseExistingFlags(t *testing.T) {
	root := testenv.Root(t)
	server := filepath.Join(t.TempDir(), "restic-manager")
	build := exec.Command("go", "build", "-o", server, "./cmd/restic-manager")
	build.Dir = root
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	serverHelp := helpOf(t, server, "server", "-h")
	restHelp := helpOf(t, testenv.RestServer(t), "--help")

	words := execStart(t, "restic-manager.service")
	if words[0] != "/usr/local/bin/restic-manager" || words[1] != "server" {
		t.Errorf("restic-manager.service runs %v", words[:2])
	}
	checkFlags(t, "restic-manager.service", serverHelp, flagNames(words))
	words = execStart(t, "rest-server.service")
	checkFlags(t, "rest-server.service", restHelp, flagNames(words))

	// The Dockerfile's CMD (an exec-form JSON array, maybe continued).
	df, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(`(?m)^CMD (\[[^\]]*\])`).FindSubmatch([]byte(strings.ReplaceAll(string(df), "\\\n", "")))
	if m == nil {
		t.Fatal("Dockerfile has no exec-form CMD")
	}
	var cmd []string
	if err := json.Unmarshal(m[1], &cmd); err != nil {
		t.Fatalf("Dockerfile CMD %s: %v", m[1], err)
	}
	if cmd[0] != "server" {
		t.Errorf("Dockerfile CMD starts with %q", cmd[0])
	}
	checkFlags(t, "Dockerfile CMD", serverHelp, flagNames(cmd))

	// The compose file's commands.
	b, err := os.ReadFile("docker-compose.yml")
	if err != nil {
		t.Fatal(err)
	}
	var compose struct {
		Services map[string]struct {
			Entrypoint []string `yaml:"entrypoint"`
			Command    []string `yaml:"command"`
		} `yaml:"services"`
	}
	if err := yaml.Unmarshal(b, &compose); err != nil {
		t.Fatal(err)
	}
	for name, svc := range compose.Services {
		help := serverHelp
		if len(svc.Entrypoint) > 0 && strings.HasSuffix(svc.Entrypoint[0], "/rest-server") {
			help = restHelp
		} else if len(svc.Command) == 0 || svc.Command[0] != "server" {
			t.Errorf("compose service %s: command %v", name, svc.Command)
		}
		checkFlags(t, "compose service "+name, help, flagNames(svc.Command))
	}
	if !strings.Contains(string(b), "--append-only") {
		t.Error("the compose file's rest-server is not append-only")
	}
}

// The server's and rest-server's units pass systemd's own checks (with the
// programs' paths pointed at stand-ins, since they are not installed here).
// The agent's unit is checked in cmd/restic-manager-agent, against the
// text "service install" writes.
func TestSystemdUnitsVerify(t *testing.T) {
	for _, unit := range []string{"restic-manager.service", "rest-server.service", "restic-manager-agent.service"} {
		b, err := os.ReadFile(filepath.Join("systemd", unit))
		if err != nil {
			t.Fatal(err)
		}
		text := string(b)
		for _, want := range []string{"After=network-online.target", "Restart=on-failure", "NoNewPrivileges=yes", "WantedBy=multi-user.target"} {
			if !strings.Contains(text, want+"\n") {
				t.Errorf("%s lacks %s", unit, want)
			}
		}
		if unit != "restic-manager-agent.service" {
			// The agent must read and restore the whole file system; the
			// others get only their own directories.
			for _, want := range []string{"ProtectSystem=strict", "ReadWritePaths=", "CapabilityBoundingSet=\n", "User="} {
				if !strings.Contains(text, want) {
					t.Errorf("%s lacks %s", unit, want)
				}
			}
		}
		sa, err := exec.LookPath("systemd-analyze")
		if err != nil {
			t.Logf("systemd-analyze not found (%v): skipping only systemd's own check of %s", err, unit)
			continue
		}
		bin := t.TempDir()
		for _, name := range []string{"restic-manager", "rest-server", "restic-manager-agent"} {
			if err := os.WriteFile(filepath.Join(bin, name), []byte("#!/bin/sh\n"), 0o755); err != nil {
				t.Fatal(err)
			}
		}
		path := filepath.Join(t.TempDir(), unit)
		if err := os.WriteFile(path, []byte(strings.ReplaceAll(text, "/usr/local/bin/", bin+"/")), 0o644); err != nil {
			t.Fatal(err)
		}
		out, err := exec.Command(sa, "verify", path).CombinedOutput()
		// User= names accounts that do not exist on a test machine; systemd
		// resolves them only when it starts the unit, so verify is quiet
		// about them. Anything it says is a finding.
		if err != nil || len(strings.TrimSpace(string(out))) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unit, err, out)
		}
	}
}

// The example agent config is one the agent accepts.
func TestExampleAgentConfigLoads(t *testing.T) {
	cfg, err := agent.LoadConfig(filepath.Join("examples", "agent.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.StateDir != "/etc/restic-manager/state" || cfg.Restic != "/usr/bin/restic" {
		t.Errorf("example config: %+v", cfg)
	}
	if fp := tlsutil.NormalizeFingerprint(cfg.CAFingerprint); len(fp) != 64 {
		t.Errorf("example ca_fingerprint has %d hex digits, want 64", len(fp))
	}
}

// The install lines the guides show are the ones the console gives: they
// pin the CA and never turn certificate verification off.
func TestGuidesShowPinnedInstallLines(t *testing.T) {
	root := testenv.Root(t)
	off := regexp.MustCompile(`curl[^\n]*(--insecure|\s-k\s)|no-check-certificate|\{\s*\$true\s*\}`)
	for _, doc := range []string{"README.md", filepath.Join("deploy", "OPERATIONS.md")} {
		b, err := os.ReadFile(filepath.Join(root, doc))
		if err != nil {
			t.Fatal(err)
		}
		if m := off.Find(b); m != nil {
			t.Errorf("%s shows an install line without verification: %q", doc, m)
		}
		if !strings.Contains(string(b), "curl -fsSL --cacert /dev/stdin https://") {
			t.Errorf("%s does not show the pinned Linux line", doc)
		}
	}
}
