package install

import (
	"io/fs"
	"os/exec"
	"strings"
	"testing"
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
		{[]string{"--prefix", t.TempDir(), "--token", "t", "--server", "https://x", "--binary", "/bin/true"}, "not the restic-manager agent"},
	} {
		out, err := exec.Command("/bin/sh", append([]string{"install.sh"}, tc.args...)...).CombinedOutput()
		if err == nil || !strings.Contains(string(out), tc.want) {
			t.Errorf("install.sh %q: %v\n%s\nwant %q", tc.args, err, out, tc.want)
		}
	}
}
