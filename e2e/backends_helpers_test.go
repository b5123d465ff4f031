package e2e

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// backend is a repository location the tests run a server for: its
// restic URL and the repository environment (credentials) the console
// stores sealed and the agent's runner hands to restic.
type backend struct {
	name string
	url  string
	env  map[string]string
}

// localBackend is a repository in a directory of the agent's machine.
func localBackend(t testing.TB) backend {
	t.Helper()
	return backend{name: "local", url: filepath.Join(t.TempDir(), "repo")}
}

// startS3 runs versitygw (an S3 gateway over a POSIX directory; see the
// Makefile's tools target for why this one) on a loopback port with keys of
// its own, and returns a backend for a repository in its bucket "restic".
func startS3(t testing.TB) backend {
	t.Helper()
	bin := testenv.Versitygw(t)
	root := filepath.Join(t.TempDir(), "s3")
	// The posix backend's buckets are the directories of its root.
	if err := os.MkdirAll(filepath.Join(root, "restic"), 0o700); err != nil {
		t.Fatal(err)
	}
	access, secret := "AK"+randomHex(8), randomHex(20)
	// The keys go in the gateway's environment, not its argv.
	env := []string{"ROOT_ACCESS_KEY_ID=" + access, "ROOT_SECRET_ACCESS_KEY=" + secret}
	for attempt := 1; ; attempt++ {
		addr := testenv.FreePort(t)
		p := start(t, "versitygw", env, bin, "--quiet", "--port", addr, "posix", root)
		err := waitListening(p, addr, nil)
		if err == nil {
			return backend{name: "s3", url: "s3:http://" + addr + "/restic/repo",
				env: map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}}
		}
		// FreePort's port can be taken before the server binds it.
		if attempt == 5 || !strings.Contains(err.Error(), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("versitygw attempt %d: %v", attempt, err)
	}
}

// sshdPath is Debian's OpenSSH server (`make backends` installs it).
func sshdPath(t testing.TB) string {
	t.Helper()
	for _, p := range []string{"/usr/sbin/sshd", "/usr/local/sbin/sshd"} {
		if _, err := os.Stat(p); err == nil {
			return p
		}
	}
	t.Fatal("sshd not installed (run `make backends` as root, or `apt-get install openssh-server`)")
	return ""
}

// startSFTP runs a test-owned sshd on a loopback port: its own host key,
// key-based login only for the current user with a fresh client key. The
// backend carries the client's private key and the server's known_hosts
// line in its environment (RESTIC_SFTP_KEY, RESTIC_SFTP_KNOWN_HOSTS), the
// only copy of the key: its file is removed once read.
func startSFTP(t testing.TB) backend {
	t.Helper()
	bin := sshdPath(t)
	dir := t.TempDir()
	keygen := func(name string) {
		if out, err := exec.Command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "e2e", "-f", filepath.Join(dir, name)).CombinedOutput(); err != nil {
			t.Fatalf("ssh-keygen: %v\n%s", err, out)
		}
	}
	keygen("host_key")
	keygen("client_key")
	key, err1 := os.ReadFile(filepath.Join(dir, "client_key"))
	pub, err2 := os.ReadFile(filepath.Join(dir, "client_key.pub"))
	hostPub, err3 := os.ReadFile(filepath.Join(dir, "host_key.pub"))
	if err := os.WriteFile(filepath.Join(dir, "authorized_keys"), pub, 0o600); err != nil || err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err, err1, err2, err3)
	}
	if err := os.Remove(filepath.Join(dir, "client_key")); err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	if os.Geteuid() == 0 {
		// sshd running as root insists on its privilege separation
		// directory, which Debian's service creates at boot.
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			t.Fatal(err)
		}
	}
	hostKey := strings.Join(strings.Fields(string(hostPub))[:2], " ")
	repoDir := filepath.Join(t.TempDir(), "sftp-repo")
	for attempt := 1; ; attempt++ {
		addr := testenv.FreePort(t)
		host, port, _ := net.SplitHostPort(addr)
		conf := fmt.Sprintf(`ListenAddress %[1]s:%[2]s
HostKey %[3]s/host_key
PidFile none
AuthorizedKeysFile %[3]s/authorized_keys
AuthenticationMethods publickey
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
AllowUsers %[4]s
StrictModes no
UsePAM no
LogLevel ERROR
Subsystem sftp internal-sftp
`, host, port, dir, u.Username)
		confPath := filepath.Join(dir, "sshd_config")
		if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		p := start(t, "sshd", nil, bin, "-D", "-e", "-f", confPath)
		err := waitListening(p, addr, []byte("SSH-2.0-"))
		if err == nil {
			return backend{name: "sftp", url: "sftp://" + u.Username + "@" + addr + "/" + repoDir,
				env: map[string]string{"RESTIC_SFTP_KEY": string(key), "RESTIC_SFTP_KNOWN_HOSTS": "[" + host + "]:" + port + " " + hostKey}}
		}
		if attempt == 5 || !strings.Contains(strings.ToLower(err.Error()), "address already in use") {
			t.Fatal(err)
		}
		t.Logf("sshd attempt %d: %v", attempt, err)
	}
}

// waitListening waits until addr accepts connections (and, with banner,
// greets with it); an error carries the process's output when it exited.
func waitListening(p *harness.Proc, addr string, banner []byte) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case <-p.Done():
			return fmt.Errorf("%s exited:\n%s", addr, p.Output())
		default:
		}
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			ok := true
			if banner != nil {
				_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
				b := make([]byte, len(banner))
				_, err := io.ReadFull(c, b)
				ok = err == nil && bytes.Equal(b, banner)
			}
			c.Close()
			if ok {
				return nil
			}
		}
		time.Sleep(50 * time.Millisecond)
	}
	return fmt.Errorf("%s: not listening after 30s:\n%s", addr, p.Output())
}

// resticOn runs restic directly (not through the agent) against a
// backend's repository, with the backend's credentials: the S3 keys in the
// environment, the SFTP key and known_hosts as files of this call's own,
// removed when it returns.
func resticOn(t testing.TB, bin string, b backend, repoURL, password string, args ...string) []byte {
	t.Helper()
	dir, err := os.MkdirTemp("", "rm-e2e-restic-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	pw := filepath.Join(dir, "pw")
	if err := os.WriteFile(pw, []byte(password), 0o600); err != nil {
		t.Fatal(err)
	}
	global := []string{"-r", repoURL, "--password-file", pw, "--no-cache"}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + dir}
	for k, v := range b.env {
		switch k {
		case "RESTIC_SFTP_KEY", "RESTIC_SFTP_KNOWN_HOSTS":
		default:
			env = append(env, k+"="+v)
		}
	}
	if key := b.env["RESTIC_SFTP_KEY"]; key != "" {
		kf, kh := filepath.Join(dir, "key"), filepath.Join(dir, "known_hosts")
		if err := os.WriteFile(kf, []byte(key), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(kh, []byte(b.env["RESTIC_SFTP_KNOWN_HOSTS"]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		global = append(global, "-o", "sftp.args=-i "+kf+" -o IdentitiesOnly=yes -o BatchMode=yes -o StrictHostKeyChecking=yes -o UserKnownHostsFile="+kh)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, bin, append(global, args...)...)
	cmd.Env = env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic %v on %s: %v: %s", args, b.name, err, stderr.String())
	}
	return out
}

// sameTree fails the test unless every regular file under want is under
// got with the same content (and got has no other files).
func sameTree(t testing.TB, want, got string) {
	t.Helper()
	files := 0
	err := filepath.WalkDir(want, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		rel, _ := filepath.Rel(want, p)
		a, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(filepath.Join(got, rel))
		if err != nil {
			return fmt.Errorf("restored tree: %w", err)
		}
		if !bytes.Equal(a, b) {
			return fmt.Errorf("restored %s differs (%d bytes, want %d)", rel, len(b), len(a))
		}
		files++
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	extra := 0
	_ = filepath.WalkDir(got, func(p string, d fs.DirEntry, err error) error {
		if err == nil && d.Type().IsRegular() {
			extra++
		}
		return nil
	})
	if extra != files {
		t.Fatalf("restored tree has %d files, the source %d", extra, files)
	}
}
