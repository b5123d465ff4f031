package runner

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// A made-up OpenSSH private key: only its lines matter here (the fake ssh
// below never parses it).
const fakeSFTPKey = `-----BEGIN OPENSSH PRIVATE KEY-----
b3BlbnNzaC1rZXktdjEAAAAABG5vbmUAAAAEbm9uZQAAAAAAAAABAAAAMwAAAAtzc2gtZW
QyNTUxOQAAACDsecretKeyLineTwoxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxAA
AAiJ2yFhbdshYWsecretKeyLineThreeyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyyy
-----END OPENSSH PRIVATE KEY-----`

// fakeSSH puts an "ssh" first on PATH that records what restic started it
// with: its arguments, its environment, and the content and mode of the
// files named by -i and UserKnownHostsFile= while the run is on (several
// files one after the other). It then fails, as a refused connection
// would.
func fakeSSH(t *testing.T) (out string) {
	t.Helper()
	bin, out := t.TempDir(), t.TempDir()
	script := `#!/bin/sh
out=` + out + `
printf '%s\n' "$@" > $out/argv
env > $out/env
rm -f $out/key $out/key.mode $out/known_hosts $out/known_hosts.mode
prev=
for a in "$@"; do
	case "$a" in
	UserKnownHostsFile=*) for f in ${a#UserKnownHostsFile=}; do cat "$f" >> $out/known_hosts; stat -c %a "$f" >> $out/known_hosts.mode; done ;;
	esac
	if [ "$prev" = -i ]; then cat "$a" >> $out/key; stat -c %a "$a" >> $out/key.mode; fi
	prev=$a
done
# Stay a moment, as a real ssh does while it connects: restic lives on
# meanwhile, so that its /proc entries can be read (procEntries).
sleep 2
echo "fake ssh: connection refused" >&2
exit 255
`
	if err := os.WriteFile(filepath.Join(bin, "ssh"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", bin+string(os.PathListSeparator)+os.Getenv("PATH"))
	return out
}

// TestSFTPCredentialsTravelAsFiles runs real restic (0.18.1 with
// sftp.args, 0.14.0 with sftp.command) against an sftp: repository whose key
// and known_hosts come in Repo.Env: ssh gets them as private files that
// exist for the run only; neither restic's nor ssh's command line or
// environment holds the key, nor does the runner's log, result or temp dir.
func TestSFTPCredentialsTravelAsFiles(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc, fake ssh is a shell script")
	}
	const knownHosts = "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfTheTestServer"
	const awsSecret = "aws-Secret-0xFEEDFACE"
	for _, tc := range []struct {
		name, restic, version, option string
	}{
		{"0.18.1", testenv.Restic(t), "0.18.1", "sftp.args="},
		{"0.14.0", testenv.Restic014(t), "0.14.0", "sftp.command=ssh "},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := fakeSSH(t)
			r, logs := newRunner(t)
			r.Restic, r.ResticVersion = tc.restic, tc.version
			repo := Repo{URL: "sftp://backup@127.0.0.1:2222//srv/restic/repo", Password: "pw-Secret-0xC0FFEE",
				Env: map[string]string{EnvSFTPKey: fakeSFTPKey, EnvSFTPKnownHosts: knownHosts, "AWS_SECRET_ACCESS_KEY": awsSecret}}
			secrets := append([]string{fakeSFTPKey, awsSecret}, strings.Split(fakeSFTPKey, "\n")[1:4]...)

			var cmdline, environ []byte
			res := r.Run(testCtx(t), Spec{Kind: KindSnapshots, Repo: repo}, Hooks{OnProcess: func(pid int) {
				cmdline, environ = procEntries(t, pid)
			}})
			if res.Status == StatusSucceeded {
				t.Fatalf("the run succeeded against a fake ssh: %+v", res)
			}
			if len(cmdline) == 0 || len(environ) == 0 {
				t.Fatal("restic's /proc entries were not read")
			}
			argv := strings.Split(strings.TrimRight(string(cmdline), "\x00"), "\x00")
			if !slices.ContainsFunc(argv, func(a string) bool { return strings.HasPrefix(a, tc.option) }) {
				t.Errorf("restic's argv %q has no %s option", argv, tc.option)
			}

			read := func(name string) string {
				b, err := os.ReadFile(filepath.Join(out, name))
				if err != nil {
					t.Fatalf("fake ssh did not record %s: %v", name, err)
				}
				return string(b)
			}
			// ssh got both files, private, with their content, and options
			// that pin the host key and never prompt.
			if got := read("key"); got != fakeSFTPKey+"\n" {
				t.Errorf("key file held %q", got)
			}
			if got := read("known_hosts"); got != knownHosts+"\n" {
				t.Errorf("known_hosts file held %q", got)
			}
			for _, m := range []string{"key.mode", "known_hosts.mode"} {
				if got := strings.TrimSpace(read(m)); got != "600" {
					t.Errorf("%s = %s, want 600", m, got)
				}
			}
			sshArgv := read("argv")
			for _, want := range []string{"127.0.0.1\n", "-p\n2222\n", "-l\nbackup\n", "StrictHostKeyChecking=yes\n", "IdentitiesOnly=yes\n", "BatchMode=yes\n", "-s\nsftp\n"} {
				if !strings.Contains(sshArgv, want) {
					t.Errorf("ssh's argv lacks %q:\n%s", want, sshArgv)
				}
			}
			sshEnv := read("env")

			for _, s := range secrets {
				for what, b := range map[string]string{"restic's argv": string(cmdline), "restic's environment": string(environ),
					"ssh's argv": sshArgv, "ssh's environment": sshEnv, "the runner's log": logs.String()} {
					if s == awsSecret && strings.Contains(what, "environment") {
						continue // restic reads S3 credentials from its environment only
					}
					if strings.Contains(b, s) {
						t.Errorf("%s holds secret %.20q…", what, s)
					}
				}
				if b, _ := json.Marshal(res); bytes.Contains(b, []byte(s)) {
					t.Errorf("the result holds secret %.20q…: %s", s, b)
				}
			}
			for _, b := range []string{string(environ), sshEnv} {
				if strings.Contains(b, EnvSFTPKey) || strings.Contains(b, EnvSFTPKnownHosts) {
					t.Errorf("an environment names the SFTP variables:\n%s", b)
				}
			}
			if l := leftovers(t, r.TempDir); len(l) != 0 {
				t.Errorf("left in TempDir after the run: %v", l)
			}
		})
	}
}

// TestSFTPCopySourceCredentials: a copy (and an init taking another
// repository's chunker parameters) reads its source with
// --from-repository-file, and real restic, 0.18.1 and 0.14.0 alike, gives
// that second repository the run's -o options: the source's SFTP key and
// known_hosts reach ssh when the destination is a local path, on 0.14
// through an sftp.command naming the source's server. On 0.18 a copy
// between two SFTP servers gives ssh both keys and both known_hosts
// files; on 0.14, whose one ssh command would reach only one server, it is
// refused before restic runs.
func TestSFTPCopySourceCredentials(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("fake ssh is a shell script")
	}
	const khA = "[127.0.0.1]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfServerA"
	const khB = "[127.0.0.2]:2223 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIHostKeyOfServerB"
	keyB := strings.ReplaceAll(fakeSFTPKey, "secretKeyLine", "otherKeyLine")
	srcA := Repo{URL: "sftp://backup@127.0.0.1:2222//srv/restic/a", Password: "pw-a",
		Env: map[string]string{EnvSFTPKey: fakeSFTPKey, EnvSFTPKnownHosts: khA}}
	dstB := Repo{URL: "sftp://other@127.0.0.2:2223//srv/restic/b", Password: "pw-b",
		Env: map[string]string{EnvSFTPKey: keyB, EnvSFTPKnownHosts: khB}}
	read := func(t *testing.T, out, name string) string {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(out, name))
		if err != nil {
			t.Fatalf("fake ssh did not record %s: %v", name, err)
		}
		return string(b)
	}
	for _, tc := range []struct{ name, restic, version string }{
		{"0.18.1", testenv.Restic(t), "0.18.1"},
		{"0.14.0", testenv.Restic014(t), "0.14.0"},
	} {
		t.Run(tc.name+" sftp to local", func(t *testing.T) {
			r, logs := newRunner(t)
			r.Restic, r.ResticVersion = tc.restic, tc.version
			local := Repo{URL: filepath.Join(t.TempDir(), "dst"), Password: "pw-local"}
			runOK(t, r, Spec{Kind: KindInit, Repo: local})
			for _, spec := range []Spec{
				{Kind: KindCopy, Repo: srcA, Copy: CopyArgs{To: local, Hostname: "h1"}},
				{Kind: KindInit, Repo: Repo{URL: filepath.Join(t.TempDir(), "new"), Password: "pw-new"}, Init: InitArgs{ChunkerFrom: &srcA}},
			} {
				out := fakeSSH(t)
				if res := r.Run(testCtx(t), spec, Hooks{}); res.Status == StatusSucceeded {
					t.Fatalf("%s succeeded against a fake ssh: %+v", spec.Kind, res)
				}
				if got := read(t, out, "key"); got != fakeSFTPKey+"\n" {
					t.Errorf("%s: ssh's key file held %q", spec.Kind, got)
				}
				if got := read(t, out, "known_hosts"); got != khA+"\n" {
					t.Errorf("%s: ssh's known_hosts held %q", spec.Kind, got)
				}
				// ssh was started for the source's server.
				argv := read(t, out, "argv")
				for _, want := range []string{"127.0.0.1\n", "2222\n", "backup", "StrictHostKeyChecking=yes\n", "BatchMode=yes\n"} {
					if !strings.Contains(argv, want) {
						t.Errorf("%s: ssh's argv lacks %q:\n%s", spec.Kind, want, argv)
					}
				}
				if strings.Contains(logs.String(), "secretKeyLine") {
					t.Errorf("%s: the runner's log holds the key", spec.Kind)
				}
			}
			if l := leftovers(t, r.TempDir); len(l) != 0 {
				t.Errorf("left in TempDir after the runs: %v", l)
			}
		})
	}

	t.Run("0.18.1 sftp to sftp", func(t *testing.T) {
		out := fakeSSH(t)
		r, _ := newRunner(t)
		r.Restic, r.ResticVersion = testenv.Restic(t), "0.18.1"
		if res := r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: srcA, Copy: CopyArgs{To: dstB, Hostname: "h1"}}, Hooks{}); res.Status == StatusSucceeded {
			t.Fatalf("succeeded against a fake ssh: %+v", res)
		}
		if got := read(t, out, "key"); got != keyB+"\n"+fakeSFTPKey+"\n" && got != fakeSFTPKey+"\n"+keyB+"\n" {
			t.Errorf("ssh's key files held %q, want both keys", got)
		}
		if got := read(t, out, "known_hosts"); !strings.Contains(got, khA+"\n") || !strings.Contains(got, khB+"\n") {
			t.Errorf("ssh's known_hosts files held %q, want both servers'", got)
		}
		if got := strings.Fields(read(t, out, "key.mode") + read(t, out, "known_hosts.mode")); !slices.Equal(got, []string{"600", "600", "600", "600"}) {
			t.Errorf("file modes %v, want 600 each", got)
		}
		if l := leftovers(t, r.TempDir); len(l) != 0 {
			t.Errorf("left in TempDir after the run: %v", l)
		}
	})

	t.Run("0.14.0 sftp to sftp", func(t *testing.T) {
		r, _ := newRunner(t)
		r.Restic, r.ResticVersion = testenv.Restic014(t), "0.14.0"
		res := r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: srcA, Copy: CopyArgs{To: dstB, Hostname: "h1"}}, Hooks{OnProcess: func(int) { t.Error("restic started") }})
		if res.Status != StatusFailed || !strings.Contains(res.Error, "needs restic 0.16 or later") {
			t.Fatalf("got %+v", res)
		}
		// Two repositories on one server (one login) share the command.
		sameServer := dstB
		sameServer.URL = "sftp://backup@127.0.0.1:2222//srv/restic/b"
		out := fakeSSH(t)
		if res := r.Run(testCtx(t), Spec{Kind: KindCopy, Repo: srcA, Copy: CopyArgs{To: sameServer, Hostname: "h1"}}, Hooks{}); res.Status == StatusSucceeded || strings.Contains(res.Error, "0.16") {
			t.Fatalf("copy on one server: %+v", res)
		}
		if got := read(t, out, "key"); !strings.Contains(got, fakeSFTPKey) || !strings.Contains(got, keyB) {
			t.Errorf("ssh's key files held %q, want both keys", got)
		}
	})
}

// A key for a repository that is not sftp: is refused, before restic runs.
func TestSFTPKeyForOtherBackendRefused(t *testing.T) {
	r, _ := newRunner(t)
	repo := Repo{URL: filepath.Join(t.TempDir(), "repo"), Password: "pw", Env: map[string]string{EnvSFTPKey: fakeSFTPKey}}
	res := r.Run(testCtx(t), Spec{Kind: KindSnapshots, Repo: repo}, Hooks{OnProcess: func(int) { t.Error("restic started") }})
	if res.Status != StatusFailed || !strings.Contains(res.Error, "sftp: repositories only") {
		t.Fatalf("got %+v", res)
	}
	if strings.Contains(res.Error, "PRIVATE KEY") {
		t.Errorf("error shows the key: %s", res.Error)
	}
}

func TestParseSFTPURL(t *testing.T) {
	for _, tc := range []struct{ in, user, host, port string }{
		{"sftp://root@127.0.0.1:2222//tmp/repo", "root", "127.0.0.1", "2222"},
		{"sftp://host/dir", "", "host", ""},
		{"sftp:user@host:/srv/repo", "user", "host", ""},
		{"sftp:u@example.org@host:repo", "u@example.org", "host", ""},
		{"sftp:host:repo", "", "host", ""},
	} {
		u, h, p, err := parseSFTPURL(tc.in)
		if err != nil || u != tc.user || h != tc.host || p != tc.port {
			t.Errorf("%s: %q %q %q %v", tc.in, u, h, p, err)
		}
	}
	for _, bad := range []string{"sftp:nocolon", "sftp://:22/x"} {
		if _, _, _, err := parseSFTPURL(bad); err == nil {
			t.Errorf("%s accepted", bad)
		}
	}
}

// The -o value survives restic's CSV reading of -o even with a comma, a
// quote-needing path or a backslash.
func TestCSVFieldRoundTrip(t *testing.T) {
	for _, s := range []string{"sftp.args=-i /tmp/k", `sftp.args=-i "C:\Temp\k" -o A=b,c`} {
		f, err := csvField(s)
		if err != nil {
			t.Fatal(err)
		}
		rec, err := csv.NewReader(strings.NewReader(f)).Read()
		if err != nil || len(rec) != 1 || rec[0] != s {
			t.Errorf("%q → %q → %q %v", s, f, rec, err)
		}
	}
	if got := shellJoin([]string{"-i", `C:\k`, "-o", "x y"}); got != `-i "C:\k" -o "x y"` {
		t.Errorf("shellJoin = %s", got)
	}
}

// The key's lines are redacted one by one as well as the whole key.
func TestRedactSFTPKeyLines(t *testing.T) {
	r := newRedactor(Repo{URL: "sftp://h//r", Password: "pw-long", Env: map[string]string{EnvSFTPKey: fakeSFTPKey}})
	line := strings.Split(fakeSFTPKey, "\n")[2]
	if got := r.redact("ssh: bad key line " + line); strings.Contains(got, line) {
		t.Errorf("key line not redacted: %s", got)
	}
	if got := r.redact(fakeSFTPKey); strings.Contains(got, "secretKeyLine") {
		t.Errorf("key not redacted: %s", got)
	}
}

// startS3 runs versitygw (an S3 server) on a loopback port over a fresh
// directory with a bucket "restic", and returns its address.
func startS3(t *testing.T, access, secret string) string {
	t.Helper()
	root := t.TempDir()
	if err := os.Mkdir(filepath.Join(root, "restic"), 0o700); err != nil { // a bucket is a directory
		t.Fatal(err)
	}
	addr := testenv.FreePort(t)
	cmd := exec.Command(testenv.Versitygw(t), "--quiet", "--port", addr, "posix", root)
	cmd.Env = append(os.Environ(), "ROOT_ACCESS_KEY_ID="+access, "ROOT_SECRET_ACCESS_KEY="+secret)
	cmd.Stdout, cmd.Stderr = io.Discard, io.Discard
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	waitFor(t, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	return addr
}

// TestS3CredentialsNotExposed backs up to a real S3 server: the secret
// access key reaches restic in its environment only (restic has no other
// way for it), never its command line, the runner's log, its result or a
// file in the runner's temp dir, during the run or after.
func TestS3CredentialsNotExposed(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	const access, secret = "AKIAE2ETESTKEY", "s3-Secret-0xDEADBEEF-c2VjcmV0"
	addr := startS3(t, access, secret)
	repo := Repo{URL: "s3:http://" + addr + "/restic/repo", Password: "pw-Secret-0xC0FFEE",
		Env: map[string]string{"AWS_ACCESS_KEY_ID": access, "AWS_SECRET_ACCESS_KEY": secret}}
	r, logs := newRunner(t)
	data := t.TempDir()
	genTree(t, data, 20, 1, 1<<20)
	for _, spec := range []Spec{
		{Kind: KindInit, Repo: repo},
		{Kind: KindBackup, Repo: repo, Backup: BackupArgs{Paths: []string{data}}},
	} {
		checked := false
		res := r.Run(testCtx(t), spec, Hooks{OnProcess: func(pid int) {
			checked = true
			cmdline, environ := procEntries(t, pid)
			if len(cmdline) == 0 || bytes.Contains(cmdline, []byte(secret)) {
				t.Errorf("restic's command line %q", cmdline)
			}
			if !bytes.Contains(environ, []byte("AWS_SECRET_ACCESS_KEY="+secret)) {
				t.Error("restic's environment lacks the secret key")
			}
			for _, name := range leftovers(t, r.TempDir) {
				if b, _ := os.ReadFile(filepath.Join(r.TempDir, name)); bytes.Contains(b, []byte(secret)) {
					t.Errorf("secret file %s holds the S3 secret", name)
				}
			}
		}})
		if res.Status != StatusSucceeded || !checked {
			t.Fatalf("%s: %+v", spec.Kind, res)
		}
		if b, _ := json.Marshal(res); bytes.Contains(b, []byte(secret)) {
			t.Errorf("%s: the result holds the secret: %s", spec.Kind, b)
		}
		if l := leftovers(t, r.TempDir); len(l) != 0 {
			t.Errorf("%s: left in TempDir: %v", spec.Kind, l)
		}
	}
	if strings.Contains(logs.String(), secret) {
		t.Errorf("the log holds the secret:\n%s", logs.String())
	}
	if snaps := resticS3(t, repo, "snapshots", "--json"); !bytes.Contains(snaps, []byte(data)) {
		t.Errorf("restic lists %s", snaps)
	}
}

// resticS3 is resticDirect with the repository's S3 keys.
func resticS3(t *testing.T, repo Repo, args ...string) []byte {
	t.Helper()
	pw := filepath.Join(t.TempDir(), "pw")
	if err := os.WriteFile(pw, []byte(repo.Password), 0o600); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(testenv.Restic(t), append([]string{"-r", repo.URL, "--password-file", pw, "--no-cache"}, args...)...)
	cmd.Env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + t.TempDir(),
		"AWS_ACCESS_KEY_ID=" + repo.Env["AWS_ACCESS_KEY_ID"], "AWS_SECRET_ACCESS_KEY=" + repo.Env["AWS_SECRET_ACCESS_KEY"]}
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("restic %v: %v", args, err)
	}
	return out
}
