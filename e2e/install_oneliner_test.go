package e2e

// The one-line installers the console gives, run as given: sh and the real
// curl against a live console, and against servers that do not hold its
// CA. A stand-in for sudo keeps what curl handed on and runs it below a
// temporary prefix, so that the test never installs into this machine.

import (
	"bytes"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/internal/tlsutil"
)

// hostWithLines creates a host and returns its ID, token and install lines.
func hostWithLines(s *server, name string) (id, token string, lines map[string]string) {
	s.t.Helper()
	var created struct {
		ID              string            `json:"id"`
		EnrollToken     string            `json:"enroll_token"`
		InstallCommands map[string]string `json:"install_commands"`
	}
	s.do("POST", "/api/v1/hosts", map[string]string{"name": name}, &created, 201)
	return created.ID, created.EnrollToken, created.InstallCommands
}

// servedScript is GET /install.sh, fetched with the console's CA pinned.
func servedScript(t *testing.T, s *server) []byte {
	t.Helper()
	c := &http.Client{Transport: &http.Transport{TLSClientConfig: s.TLSConfig()}}
	resp, err := c.Get(s.URL("/install.sh"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("GET /install.sh: %d %v", resp.StatusCode, err)
	}
	return b
}

// fakeSudo is a directory to put first on PATH, holding a "sudo" that
// writes what it reads to DIR/stdin and its arguments to DIR/args, then
// runs its arguments on that input with test-only options after them
// (--prefix DIR/root --restic R --no-service): without root, nothing
// outside DIR.
func fakeSudo(t *testing.T) (pathDir, dir string) {
	t.Helper()
	pathDir, dir = t.TempDir(), t.TempDir()
	script := "#!/bin/sh\n" +
		"cat >'" + dir + "/stdin'\n" +
		"printf '%s\\n' \"$@\" >'" + dir + "/args'\n" +
		"exec \"$@\" --prefix '" + dir + "/root' --restic '" + testenv.Restic(t) + "' --no-service <'" + dir + "/stdin'\n"
	if err := os.WriteFile(filepath.Join(pathDir, "sudo"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return pathDir, dir
}

// runLine runs a line with /bin/sh -c, the stand-in sudo (if any) first
// on PATH.
func runLine(t *testing.T, sudoDir, line string) (stdout, stderr string, code int) {
	t.Helper()
	cmd := exec.Command("/bin/sh", "-c", line)
	if sudoDir != "" {
		cmd.Env = append(os.Environ(), "PATH="+sudoDir+":"+os.Getenv("PATH"))
	}
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	var ee *exec.ExitError
	if err != nil && !errors.As(err, &ee) {
		t.Fatal(err)
	}
	return o.String(), e.String(), cmd.ProcessState.ExitCode()
}

// curlPart is the line up to "| sudo": what runs before root does.
func curlPart(t *testing.T, line string) string {
	t.Helper()
	fetch, _, ok := strings.Cut(line, " | sudo sh -s -- ")
	if !ok {
		t.Fatalf("the line does not pipe into sudo sh -s --: %s", line)
	}
	return fetch
}

// TestInstallOneLinePinsTheCA: the console's Linux line, as given, fetches
// install.sh with curl trusting only the console's CA; the script it hands
// to (stand-in) sudo sh is the served one, carrying that CA, and installs:
// it downloads the agent from the console trusting that CA alone, enrols
// the host and pins the CA. The same line against a server with another
// CA on the console's address, and against one that sends the console's
// own CA after a certificate some other CA signed, stops in curl (exit 60,
// a certificate error) and sh receives not a byte; the same rogue server
// with the old --insecure line would have had its script run. The Windows
// line carries the same pin (checked here as text: no PowerShell).
func TestInstallOneLinePinsTheCA(t *testing.T) {
	_, agentBin := binaries(t)
	downloads := t.TempDir()
	if err := os.Symlink(agentBin, filepath.Join(downloads, "restic-manager-agent-linux-"+runtime.GOARCH)); err != nil {
		t.Fatal(err)
	}
	s := newServer(t, "--downloads", downloads)
	id, token, lines := hostWithLines(s, "one-liner")
	line := lines["linux"]
	t.Logf("linux line: %s", line)
	for _, want := range []string{
		"printf '%s\\n' '-----BEGIN CERTIFICATE-----' '",
		"| curl -fsSL --cacert /dev/stdin " + s.URL("/install.sh") + " | sudo sh -s -- ",
		"--server " + s.URL("") + " --token " + token + " --ca-fingerprint " + s.CAFingerprint,
	} {
		if !strings.Contains(line, want) {
			t.Errorf("linux line lacks %q", want)
		}
	}
	if strings.Contains(line, "--insecure") || strings.Contains(line, " -k ") {
		t.Fatalf("linux line turns verification off: %s", line)
	}
	caPEM, err := os.ReadFile(filepath.Join(s.Data, "tls", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(caPEM)
	if blk == nil || tlsutil.Fingerprint(blk.Bytes) != s.CAFingerprint {
		t.Fatal("fixture: DATA/tls/ca.pem is not the CA the console pins")
	}

	// The Windows line: the callback compares the chain's root with the
	// console's CA, never accepts everything.
	win := lines["windows"]
	if strings.Contains(strings.ReplaceAll(win, " ", ""), "{$true}") {
		t.Errorf("windows line accepts any certificate: %s", win)
	}
	for _, want := range []string{
		"ServerCertificateValidationCallback = { param($request, $cert, $chain, $policyErrors) ",
		".Replace('-', '') -eq '" + s.CAFingerprint + "') }; & ",
		"DownloadString('" + s.URL("/install.ps1") + "'))) -Server " + s.URL("") + " -Token " + token + " -CaFingerprint " + s.CAFingerprint,
	} {
		if !strings.Contains(win, want) {
			t.Errorf("windows line lacks %q:\n%s", want, win)
		}
	}

	// The curl part alone: the script exactly as the console serves it,
	// with the CA written in.
	served := servedScript(t, s)
	if !bytes.Contains(served, []byte("CONSOLE_CA='"+strings.TrimSuffix(string(caPEM), "\n")+"'\n")) {
		t.Fatal("the served install.sh does not carry the console's CA")
	}
	out, errOut, code := runLine(t, "", curlPart(t, line))
	if code != 0 || out != string(served) {
		t.Fatalf("curl part: exit %d, %d bytes (want the %d served)\n%s", code, len(out), len(served), errOut)
	}

	// The whole line: sudo sh gets that script and the line's arguments,
	// and the script installs through the pinned CA.
	sudo, dir := fakeSudo(t)
	out, errOut, code = runLine(t, sudo, line)
	if code != 0 {
		t.Fatalf("the line: exit %d\n%s%s", code, out, errOut)
	}
	t.Logf("the line:\n%s", errOut)
	if got, _ := os.ReadFile(filepath.Join(dir, "stdin")); !bytes.Equal(got, served) {
		t.Errorf("sudo sh got %d bytes, not the served script", len(got))
	}
	args, _ := os.ReadFile(filepath.Join(dir, "args"))
	if want := strings.Join([]string{"sh", "-s", "--", "--server", s.URL(""), "--token", token, "--ca-fingerprint", s.CAFingerprint}, "\n") + "\n"; string(args) != want {
		t.Errorf("sudo got arguments\n%s\nwant\n%s", args, want)
	}
	if !strings.Contains(errOut, "downloading "+s.URL("/downloads/restic-manager-agent-linux-"+runtime.GOARCH)) {
		t.Errorf("the script did not download the agent from the console:\n%s", errOut)
	}
	p := instLayout(filepath.Join(dir, "root"))
	want, _ := os.ReadFile(agentBin)
	if got, err := os.ReadFile(p.agent); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the installed agent is not the console's (%v)", err)
	}
	cfg, err := os.ReadFile(p.config)
	if err != nil || !strings.Contains(string(cfg), "host_id: "+id+"\n") || !strings.Contains(string(cfg), s.CAFingerprint) {
		t.Errorf("config (%v) does not name host %s with the pinned CA:\n%s", err, id, cfg)
	}

	// A rogue server that sends the console's real CA certificate (it is
	// public) after a certificate for the same address from another CA
	// with the same name: curl checks the signature, not just the name.
	rogueMarker := filepath.Join(t.TempDir(), "rogue-script-ran")
	rogue := newRogueServer(t, caPEM, "#!/bin/sh\necho ran >'"+rogueMarker+"'\n")
	// A server with another generated CA on the console's own address.
	stop(t, s.Proc)
	impostor := startServer(t, t.TempDir(), s.HTTPAddr, s.MQTTAddr)
	if impostor.CAFingerprint == s.CAFingerprint {
		t.Fatal("the impostor has the console's CA")
	}
	for _, tc := range []struct{ name, line string }{
		{"another CA on the console's address", line},
		{"the console's CA sent after another CA's certificate", strings.ReplaceAll(line, s.URL(""), rogue.URL)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out, errOut, code := runLine(t, "", curlPart(t, tc.line))
			if code != 60 || out != "" || !strings.Contains(errOut, "SSL certificate problem") {
				t.Errorf("curl part: exit %d (want 60, a certificate it cannot verify), %d bytes out\n%s", code, len(out), errOut)
			}
			sudo, dir := fakeSudo(t)
			out, errOut, _ = runLine(t, sudo, tc.line)
			if got, err := os.ReadFile(filepath.Join(dir, "stdin")); err != nil || len(got) != 0 {
				t.Errorf("sudo sh got %d bytes (%v), want none\n%s", len(got), err, got)
			}
			if strings.Contains(out+errOut, "install.sh:") {
				t.Errorf("install.sh ran:\n%s%s", out, errOut)
			}
			if _, err := os.Stat(filepath.Join(dir, "root")); !errors.Is(err, os.ErrNotExist) {
				t.Errorf("something was installed: %v", err)
			}
			if !strings.Contains(errOut, "SSL certificate problem") {
				t.Errorf("the line did not say why it stopped:\n%s", errOut)
			}
		})
	}
	if _, err := os.Stat(rogueMarker); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("the rogue server's script ran: %v", err)
	}
	// The marker does show a run: the old line, --insecure, runs the rogue
	// server's script.
	sudo, _ = fakeSudo(t)
	old := "curl -fsSL --insecure " + rogue.URL + "/install.sh | sudo sh -s -- --server " + rogue.URL
	if _, errOut, _ := runLine(t, sudo, old); !fileHas(rogueMarker, "ran") {
		t.Errorf("the --insecure control did not run the rogue script (the check would see nothing):\n%s", errOut)
	}
}

func fileHas(path, text string) bool {
	b, err := os.ReadFile(path)
	return err == nil && strings.Contains(string(b), text)
}

// newRogueServer serves script at /install.sh over TLS with a certificate
// for 127.0.0.1 from a CA of its own, followed by the console's CA
// certificate (caPEM), as a server in between could.
func newRogueServer(t *testing.T, caPEM []byte, script string) *httptest.Server {
	t.Helper()
	own, err := tlsutil.LoadOrCreate(t.TempDir(), []string{"127.0.0.1"})
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(caPEM)
	if blk == nil {
		t.Fatal("the console's ca.pem holds no PEM block")
	}
	cur, err := own.Config.GetCertificate(&tls.ClientHelloInfo{})
	if err != nil {
		t.Fatal(err)
	}
	pair := *cur
	pair.Certificate = [][]byte{pair.Certificate[0], blk.Bytes}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, script)
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{pair}}
	srv.Config.ErrorLog = log.New(io.Discard, "", 0) // the refused handshakes
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv
}
