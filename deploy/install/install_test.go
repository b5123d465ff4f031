package install

import (
	"encoding/pem"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/internal/tlsutil"
)

// The embedded scripts are the ones in this directory; the e2e tests run
// install.sh itself against a live console (e2e/install_test.go).
func TestScriptsAreEmbedded(t *testing.T) {
	for _, name := range []string{"install.sh", "install.ps1"} {
		b, err := fs.ReadFile(Scripts, name)
		if err != nil {
			t.Fatal(err)
		}
		if len(b) < 1000 {
			t.Errorf("%s is only %d bytes", name, len(b))
		}
	}
}

func TestInstallShIsPOSIX(t *testing.T) {
	// dash is Debian's /bin/sh: it rejects most bashisms at parse time.
	for _, sh := range []string{"/bin/sh", "dash", "busybox"} {
		path, err := exec.LookPath(sh)
		if err != nil {
			t.Logf("%s not found: not checked with it", sh)
			continue
		}
		args := []string{"-n", "install.sh"}
		if sh == "busybox" {
			args = append([]string{"sh"}, args...)
		}
		if out, err := exec.Command(path, args...).CombinedOutput(); err != nil {
			t.Errorf("%s -n install.sh: %v\n%s", sh, err, out)
		}
	}
	if sc, err := exec.LookPath("shellcheck"); err == nil {
		if out, err := exec.Command(sc, "-s", "sh", "install.sh").CombinedOutput(); err != nil {
			t.Errorf("shellcheck: %v\n%s", err, out)
		}
	} else {
		t.Log("shellcheck not found: install.sh not linted")
	}
	b, _ := fs.ReadFile(Scripts, "install.sh")
	if !strings.HasPrefix(string(b), "#!/bin/sh\n") || strings.Contains(string(b), "\r") {
		t.Error("install.sh must start with #!/bin/sh and use LF line ends")
	}
	// The last line runs everything, so a truncated download runs nothing.
	if lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n"); lines[len(lines)-1] != `main "$@"` {
		t.Errorf("install.sh ends with %q", lines[len(lines)-1])
	}
}

func TestInstallSh(t *testing.T) {
	out, err := exec.Command("/bin/sh", "install.sh", "--help").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "Usage: install.sh") {
		t.Errorf("--help: %v\n%s", err, out)
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--bogus"}, "unknown option --bogus"},
		{[]string{"--server"}, "--server needs a value"},
		{[]string{"--prefix", t.TempDir(), "--server", "https://x"}, "--token is required"},
		{[]string{"--prefix", t.TempDir(), "--token", "t"}, "--server URL is required"},
		{[]string{"--prefix", t.TempDir(), "--token", "t", "--server", "ftp://x"}, "must be an http:// or https:// URL"},
		{[]string{"--prefix", t.TempDir(), "--token", "t", "--server", "https://x", "--ca-fingerprint", "abc"}, "64 hex digits"},
		{[]string{"--prefix", t.TempDir(), "--token", "t", "--server", "https://x", "--binary", "/nonexistent"}, "no such file"},
		{[]string{"--prefix", t.TempDir(), "--token", "t", "--server", "https://x", "--ca-file", "install.sh"}, "--ca-file needs --ca-fingerprint"},
		{[]string{"--prefix", t.TempDir(), "--token", "t", "--server", "https://x", "--ca-fingerprint", strings.Repeat("ab", 32), "--ca-file", "/nonexistent"}, "--ca-file /nonexistent: no such file"},
		{[]string{"--prefix", t.TempDir(), "--token", "t", "--server", "https://x", "--ca-fingerprint", strings.Repeat("ab", 32), "--ca-file", "install.sh"}, "not a PEM certificate"},
		{[]string{"--prefix", t.TempDir(), "--token", "t", "--server", "https://x", "--binary", "/bin/true"}, "not the restic-manager agent"},
	} {
		out, err := exec.Command("/bin/sh", append([]string{"install.sh"}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("install.sh %q: %v\n%s\nwant %q", tc.args, err, out, tc.want)
		}
	}
}

// testCA is a console's generated CA (internal/tlsutil, as the server makes
// it) and its fingerprint.
func testCA(t *testing.T) (caPEM []byte, fp string) {
	t.Helper()
	dir := t.TempDir()
	srv, err := tlsutil.LoadOrCreate(dir, []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	caPEM, err = os.ReadFile(filepath.Join(dir, "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	return caPEM, srv.CAFingerprint
}

// noVerificationOff fails on anything that turns certificate checks off.
func noVerificationOff(t *testing.T, what, s string) {
	t.Helper()
	for _, bad := range []*regexp.Regexp{
		regexp.MustCompile(`--insecure|(^|\s)-k(\s|$)|-[a-zA-Z]*k[a-zA-Z]*\s+https?://`),
		regexp.MustCompile(`no-check-certificate`),
		regexp.MustCompile(`\{\s*\$true\s*\}`),
	} {
		if loc := bad.FindStringIndex(s); loc != nil {
			t.Errorf("%s turns verification off (%q):\n%s", what, s[loc[0]:loc[1]], s)
		}
	}
}

// balanced checks the quoting and bracketing of a PowerShell line: a
// mistake there is a parse error on Windows, where no test runs.
func balanced(t *testing.T, line string) {
	t.Helper()
	var stack []rune
	pairs := map[rune]rune{')': '(', '}': '{', ']': '['}
	inQuote := false
	for _, r := range line {
		switch {
		case r == '\'':
			inQuote = !inQuote
		case inQuote:
		case r == '(' || r == '{' || r == '[':
			stack = append(stack, r)
		case pairs[r] != 0:
			if len(stack) == 0 || stack[len(stack)-1] != pairs[r] {
				t.Fatalf("unbalanced %q in %s", r, line)
			}
			stack = stack[:len(stack)-1]
		}
	}
	if inQuote || len(stack) > 0 {
		t.Fatalf("unclosed quote or bracket (%q) in %s", string(stack), line)
	}
}

// TestCommandsPinTheCA: with the console's generated CA, the Linux line
// gives curl exactly that CA as its only CA file and the Windows line
// accepts only a chain whose root has the CA's fingerprint; neither turns
// verification off, and both pass the fingerprint on to the script.
func TestCommandsPinTheCA(t *testing.T) {
	caPEM, fp := testCA(t)
	cmds, err := Commands(Console{URL: "https://console.example:8080/", CAPEM: caPEM, CAFingerprint: strings.ToUpper(fp)}, "rme_tok")
	if err != nil {
		t.Fatal(err)
	}
	linux, windows := cmds["linux"], cmds["windows"]
	noVerificationOff(t, "linux line", linux)
	noVerificationOff(t, "windows line", windows)

	printer, rest, ok := strings.Cut(linux, " | curl ")
	if !ok || !strings.HasPrefix(printer, `printf '%s\n' '-----BEGIN CERTIFICATE-----' '`) {
		t.Fatalf("linux line does not start by writing the CA:\n%s", linux)
	}
	if want := "-fsSL --cacert /dev/stdin https://console.example:8080/install.sh | sudo sh -s -- --server https://console.example:8080 --token rme_tok --ca-fingerprint " + fp; rest != want {
		t.Errorf("linux line after the CA:\n%s\nwant\n%s", rest, want)
	}
	// What curl reads on its stdin is the CA, byte for byte.
	if out, err := exec.Command("/bin/sh", "-c", printer).Output(); err != nil || string(out) != string(caPEM) {
		t.Errorf("the line's CA (%v):\n%s\nwant\n%s", err, out, caPEM)
	}
	if strings.ContainsAny(linux, "\n\r") {
		t.Error("the linux line spans several lines")
	}

	balanced(t, windows)
	cb, rest, ok := strings.Cut(windows, "; & ([scriptblock]::Create(")
	if !ok || !strings.HasPrefix(cb, "[Net.ServicePointManager]::SecurityProtocol = 'Tls12'; [Net.ServicePointManager]::ServerCertificateValidationCallback = { param($request, $cert, $chain, $policyErrors) ") {
		t.Fatalf("windows line does not start with the pinning callback:\n%s", windows)
	}
	for _, want := range []string{
		"$root = $chain.ChainElements[$chain.ChainElements.Count - 1].Certificate",
		"(([int]$policyErrors -band 3) -eq 0) -and ",
		"-not ($chain.ChainStatus | Where-Object { @('NoError', 'UntrustedRoot', 'RevocationStatusUnknown', 'OfflineRevocation') -notcontains $_.Status }) -and ",
		"([BitConverter]::ToString([Security.Cryptography.SHA256]::Create().ComputeHash($root.RawData)).Replace('-', '') -eq '" + fp + "') }",
	} {
		if !strings.Contains(cb, want) {
			t.Errorf("the callback lacks %q:\n%s", want, cb)
		}
	}
	if want := "(New-Object Net.WebClient).DownloadString('https://console.example:8080/install.ps1'))) -Server https://console.example:8080 -Token rme_tok -CaFingerprint " + fp; rest != want {
		t.Errorf("windows line after the callback:\n%s\nwant\n%s", rest, want)
	}
	// The pinned value is the CA's own fingerprint.
	blk, _ := pem.Decode(caPEM)
	if got := tlsutil.Fingerprint(blk.Bytes); got != fp {
		t.Fatalf("fixture: %s != %s", got, fp)
	}

	// A CA that does not match the fingerprint, or no CA at all: no lines
	// (the console then makes them without a pin, which fails closed).
	if _, err := Commands(Console{URL: "https://c", CAPEM: caPEM, CAFingerprint: strings.Repeat("ab", 32)}, "t"); err == nil {
		t.Error("a CA with another fingerprint made lines")
	}
	if _, err := Commands(Console{URL: "https://c", CAPEM: []byte("-----BEGIN CERTIFICATE-----\n")}, "t"); err == nil {
		t.Error("a broken CA made lines")
	}
}

// TestCommandsWithoutCA: a console with a certificate the machines trust
// (--tls-cert) or plain HTTP: no pin, and verification stays on.
func TestCommandsWithoutCA(t *testing.T) {
	for _, tc := range []struct {
		c                      Console
		wantLinux, wantWindows string
	}{
		{Console{URL: "https://backup.example.org"},
			"curl -fsSL https://backup.example.org/install.sh | sudo sh -s -- --server https://backup.example.org --token T",
			"[Net.ServicePointManager]::SecurityProtocol = 'Tls12'; [Net.ServicePointManager]::ServerCertificateValidationCallback = $null; & ([scriptblock]::Create((New-Object Net.WebClient).DownloadString('https://backup.example.org/install.ps1'))) -Server https://backup.example.org -Token T"},
		// An operator's own chain ending in a private CA: the agent pins it,
		// the machine must trust it already for the download.
		{Console{URL: "https://backup.example.org", CAFingerprint: "AB:" + strings.Repeat("cd", 31)},
			"curl -fsSL https://backup.example.org/install.sh | sudo sh -s -- --server https://backup.example.org --token T --ca-fingerprint ab" + strings.Repeat("cd", 31),
			"[Net.ServicePointManager]::SecurityProtocol = 'Tls12'; [Net.ServicePointManager]::ServerCertificateValidationCallback = $null; & ([scriptblock]::Create((New-Object Net.WebClient).DownloadString('https://backup.example.org/install.ps1'))) -Server https://backup.example.org -Token T -CaFingerprint ab" + strings.Repeat("cd", 31)},
		{Console{URL: "http://localhost:8080"},
			"curl -fsSL http://localhost:8080/install.sh | sudo sh -s -- --server http://localhost:8080 --token T",
			"& ([scriptblock]::Create((New-Object Net.WebClient).DownloadString('http://localhost:8080/install.ps1'))) -Server http://localhost:8080 -Token T"},
	} {
		cmds, err := Commands(tc.c, "T")
		if err != nil {
			t.Fatal(err)
		}
		if cmds["linux"] != tc.wantLinux {
			t.Errorf("linux:\n%s\nwant\n%s", cmds["linux"], tc.wantLinux)
		}
		if cmds["windows"] != tc.wantWindows {
			t.Errorf("windows:\n%s\nwant\n%s", cmds["windows"], tc.wantWindows)
		}
		noVerificationOff(t, "linux line", cmds["linux"])
		noVerificationOff(t, "windows line", cmds["windows"])
		balanced(t, cmds["windows"])
	}
}

// TestScriptsNeverSkipVerification: neither script has a way to download
// anything unverified.
func TestScriptsNeverSkipVerification(t *testing.T) {
	for _, name := range []string{"install.sh", "install.ps1"} {
		b, _ := fs.ReadFile(Scripts, name)
		// The header comments show the lines; the code is what counts, but
		// the comments must not teach the old way either.
		noVerificationOff(t, name, string(b))
	}
}

// TestScriptCarriesCA: install.sh as the console serves it holds the CA,
// stays a POSIX script that runs everything from its last line, and uses
// that CA only when it matches the fingerprint it is given.
func TestScriptCarriesCA(t *testing.T) {
	caPEM, fp := testCA(t)
	raw, _ := fs.ReadFile(Scripts, "install.sh")
	for _, name := range []string{"install.sh", "install.ps1"} {
		b, _ := fs.ReadFile(Scripts, name)
		if got, err := Script(name, nil); err != nil || string(got) != string(b) {
			t.Errorf("%s without a CA differs from the file (%v)", name, err)
		}
	}
	if got, _ := Script("install.ps1", caPEM); !strings.Contains(string(got), "param(") || strings.Contains(string(got), "BEGIN CERTIFICATE") {
		t.Error("install.ps1 is not served as it is")
	}
	if _, err := Script("install.sh", []byte("-----BEGIN CERTIFICATE-----\nx\n")); err == nil {
		t.Error("a broken CA was written into install.sh")
	}
	served, err := Script("install.sh", caPEM)
	if err != nil {
		t.Fatal(err)
	}
	if want := "CONSOLE_CA='" + strings.TrimSuffix(string(caPEM), "\n") + "'\n"; !strings.Contains(string(served), want) {
		t.Fatalf("served install.sh lacks %q", want)
	}
	if len(served) != len(raw)+len(caPEM)-1 {
		t.Errorf("served install.sh is %d bytes, want %d: more than the CA changed", len(served), len(raw)+len(caPEM)-1)
	}
	if lines := strings.Split(strings.TrimRight(string(served), "\n"), "\n"); lines[len(lines)-1] != `main "$@"` {
		t.Errorf("served install.sh ends with %q", lines[len(lines)-1])
	}
	dir := t.TempDir()
	script := filepath.Join(dir, "install.sh")
	if err := os.WriteFile(script, served, 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("/bin/sh", "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("sh -n on the served script: %v\n%s", err, out)
	}
	run := func(args ...string) string {
		t.Helper()
		base := []string{script, "--prefix", filepath.Join(dir, "root"), "--token", "t", "--server", "https://127.0.0.1:1", "--no-service"}
		out, err := exec.Command("/bin/sh", append(base, args...)...).CombinedOutput()
		if err == nil {
			t.Fatalf("install.sh %q succeeded against nothing:\n%s", args, out)
		}
		return string(out)
	}
	// Another fingerprint: refused before any download.
	if out := run("--ca-fingerprint", strings.Repeat("ab", 32)); !strings.Contains(out, "refusing to trust it") || strings.Contains(out, "downloading") {
		t.Errorf("a CA that does not match the fingerprint:\n%s", out)
	}
	// The right one: on to the download (nothing listens there).
	if out := run("--ca-fingerprint", fp); !strings.Contains(out, "downloading https://127.0.0.1:1/downloads/") || !strings.Contains(out, "could not download") {
		t.Errorf("the matching CA:\n%s", out)
	}
	// --ca-file wins over the CA carried, and is checked the same way.
	other, _ := testCA(t)
	otherFile := filepath.Join(dir, "other.pem")
	if err := os.WriteFile(otherFile, other, 0o644); err != nil {
		t.Fatal(err)
	}
	if out := run("--ca-fingerprint", fp, "--ca-file", otherFile); !strings.Contains(out, "refusing to trust it") {
		t.Errorf("--ca-file with another CA:\n%s", out)
	}
}
