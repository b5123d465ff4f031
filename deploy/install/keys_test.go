package install

import (
	"io/fs"
	"os/exec"
	"strings"
	"testing"
)

// The lines for an enrolment key are the token's lines, pinning alike,
// with --key (-Key) in the token's place.
func TestKeyCommands(t *testing.T) {
	caPEM, fp := testCA(t)
	for _, c := range []Console{
		{URL: "https://console.example:8080/", CAPEM: caPEM, CAFingerprint: fp},
		{URL: "https://backup.example.org", CAFingerprint: fp},
		{URL: "http://localhost:8080"},
	} {
		byKey, err := KeyCommands(c, "rmk_K")
		if err != nil {
			t.Fatal(err)
		}
		byToken, err := Commands(c, "rmk_K")
		if err != nil {
			t.Fatal(err)
		}
		if want := strings.Replace(byToken["linux"], " --token rmk_K", " --key rmk_K", 1); byKey["linux"] != want || !strings.Contains(want, " --key rmk_K") {
			t.Errorf("linux:\n%s\nwant\n%s", byKey["linux"], want)
		}
		if want := strings.Replace(byToken["windows"], " -Token rmk_K", " -Key rmk_K", 1); byKey["windows"] != want || !strings.Contains(want, " -Key rmk_K") {
			t.Errorf("windows:\n%s\nwant\n%s", byKey["windows"], want)
		}
		noVerificationOff(t, "linux line", byKey["linux"])
		noVerificationOff(t, "windows line", byKey["windows"])
		balanced(t, byKey["windows"])
	}
	if _, err := KeyCommands(Console{URL: "https://c", CAPEM: caPEM, CAFingerprint: strings.Repeat("ab", 32)}, "k"); err == nil {
		t.Error("a CA with another fingerprint made lines")
	}
}

// install.sh takes a token or a key, not both, and --name and --labels
// with a key only; the environment fills in only when neither is given.
func TestInstallShKeyOptions(t *testing.T) {
	out, err := exec.Command("/bin/sh", "install.sh", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--key KEY") || !strings.Contains(string(out), "--labels k=v") {
		t.Errorf("--help does not tell of --key and --labels: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		env  []string
		args []string
		want string
	}{
		{nil, []string{"--token", "t", "--key", "k"}, "give --token or --key, not both"},
		{[]string{"RM_ENROLL_TOKEN=t", "RM_ENROLL_KEY=k"}, nil, "give --token or --key, not both"},
		{nil, []string{"--token", "t", "--name", "n"}, "--name and --labels go with --key"},
		{nil, []string{"--token", "t", "--labels", "a=b"}, "--name and --labels go with --key"},
		{[]string{"RM_ENROLL_TOKEN=t"}, []string{"--labels", "a=b"}, "--name and --labels go with --key"},
		{nil, []string{"--key"}, "--key needs a value"},
		{nil, nil, "--token is required to enrol this machine, or --key"},
		// Past the checks, to the download (nothing listens there).
		{nil, []string{"--key", "k", "--name", "n", "--labels", "a=b"}, "could not download"},
		{[]string{"RM_ENROLL_KEY=k"}, []string{"--labels", "a=b"}, "could not download"},
		{[]string{"RM_ENROLL_KEY=k"}, []string{"--token", "t"}, "could not download"},
	} {
		cmd := exec.Command("/bin/sh", append([]string{"install.sh", "--prefix", t.TempDir(), "--server", "http://127.0.0.1:1"}, tc.args...)...)
		cmd.Env = append([]string{"PATH=/usr/bin:/bin"}, tc.env...)
		out, err := cmd.CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("env %q install.sh %q: %v\n%s\nwant %q", tc.env, tc.args, err, out, tc.want)
		}
	}
}

// install.ps1 (not run here: no PowerShell) has the same options and
// passes the key through the environment, never on the command line.
func TestInstallPs1KeyOptions(t *testing.T) {
	b, _ := fs.ReadFile(Scripts, "install.ps1")
	s := string(b)
	for _, want := range []string{
		"[string]$Key,", "[string]$Name,", "[string[]]$Labels,",
		"$env:RM_ENROLL_KEY = $Key",
		"$enrollArgs += @('--name', $Name)",
		"$enrollArgs += @('--labels', $labelText)",
		"give -Token or -Key, not both",
	} {
		if !strings.Contains(s, want) {
			t.Errorf("install.ps1 lacks %q", want)
		}
	}
	if strings.Contains(s, "'--key'") {
		t.Error("install.ps1 puts the key on the agent's command line")
	}
}
