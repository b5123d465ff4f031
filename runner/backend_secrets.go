package runner

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"net/url"
	"os"
	"strings"
)

// Repository variables of restic-manager's own, not restic's: an SFTP
// repository's private key (PEM, OpenSSH format) and the server's
// known_hosts line(s). They arrive sealed in Repo.Env like every backend
// credential, but restic has no variable for them: the runner writes them
// to private files for the run, hands ssh the files' names through restic's
// sftp options, and keeps the variables out of restic's environment. So the
// key is never in argv, in an environment, or in a file that outlives the
// run.
const (
	EnvSFTPKey        = "RESTIC_SFTP_KEY"
	EnvSFTPKnownHosts = "RESTIC_SFTP_KNOWN_HOSTS"
)

// fileOnlyEnv are the Repo.Env variables that reach restic as files, never
// as variables.
var fileOnlyEnv = map[string]bool{EnvSFTPKey: true, EnvSFTPKnownHosts: true}

// backendFiles writes a run's backend credential files to dir and returns
// restic's global options for them and a function that removes the files.
// repos are the run's repositories: the one restic opens with -r and, for
// a copy or an init taking another's chunker parameters, the second one
// (--from-repository-file). restic has one set of extended options per
// run and the second repository inherits it (0.14's and 0.18's
// secondary_repo.go copy the global options, -o included), so both
// repositories' ssh settings go into one: each key as its own -i, every
// known_hosts file in one UserKnownHostsFile (ssh reads each, and tries
// each key in turn). Nothing (nil, no-op) for a run without SFTP
// credentials.
func backendFiles(dir string, v resticVersion, repos ...Repo) (args []string, cleanup func(), err error) {
	cleanup = func() {}
	var sftpURLs, credURLs []string // every sftp repository; those with credentials
	for _, repo := range repos {
		u := strings.TrimSpace(repo.URL)
		if strings.HasPrefix(u, "sftp:") {
			sftpURLs = append(sftpURLs, u)
		}
		if repo.Env[EnvSFTPKey] == "" && repo.Env[EnvSFTPKnownHosts] == "" {
			continue
		}
		if !strings.HasPrefix(u, "sftp:") {
			return nil, cleanup, fmt.Errorf("%s and %s are for sftp: repositories only", EnvSFTPKey, EnvSFTPKnownHosts)
		}
		credURLs = append(credURLs, u)
	}
	if len(credURLs) == 0 {
		return nil, cleanup, nil
	}
	// Before 0.16 the whole ssh command line, server included, goes in
	// sftp.command, and restic runs it for every sftp repository of the
	// run: two repositories on different SFTP servers cannot both be
	// reached (checked before any file is written).
	if !v.atLeast(0, 16, 0) {
		if err := oneSFTPServer(sftpURLs, v); err != nil {
			return nil, cleanup, err
		}
	}
	var files []string
	cleanup = func() {
		for _, f := range files {
			_ = os.Remove(f)
		}
	}
	defer func() {
		if err != nil {
			cleanup()
			cleanup = func() {}
		}
	}()
	write := func(pattern, content string) (string, error) {
		// ssh refuses a key without its final line break ("invalid format").
		if !strings.HasSuffix(content, "\n") {
			content += "\n"
		}
		name, err := writeSecret(dir, pattern, content)
		if err != nil {
			return "", err
		}
		files = append(files, name)
		// restic splits sftp.args at white space and quotes, ssh splits
		// UserKnownHostsFile at white space: such a name would be misread.
		if strings.ContainsAny(name, " \t\r\n\"'") {
			return "", fmt.Errorf("secret file name %q contains white space or a quote, which ssh's options cannot carry: choose a temp dir without them", name)
		}
		return name, nil
	}
	// BatchMode: ssh never prompts (restic holds ssh's stdin and stdout for
	// the SFTP protocol, so a prompt would hang the run).
	ssh := []string{"-o", "BatchMode=yes"}
	var keys, knownHosts []string
	for _, repo := range repos {
		if key := repo.Env[EnvSFTPKey]; key != "" {
			f, err := write("restic-sftp-key-*", key)
			if err != nil {
				return nil, cleanup, fmt.Errorf("cannot write the SFTP key file: %w", err)
			}
			keys = append(keys, f)
		}
		if kh := repo.Env[EnvSFTPKnownHosts]; kh != "" {
			f, err := write("restic-sftp-known-hosts-*", kh)
			if err != nil {
				return nil, cleanup, fmt.Errorf("cannot write the SFTP known_hosts file: %w", err)
			}
			knownHosts = append(knownHosts, f)
		}
	}
	for _, f := range keys {
		ssh = append(ssh, "-i", f)
	}
	if len(keys) > 0 {
		// IdentitiesOnly: these keys, not whatever an ssh-agent offers.
		ssh = append(ssh, "-o", "IdentitiesOnly=yes")
	}
	if len(knownHosts) > 0 {
		// The given host keys only, and a server whose key is not among
		// them is refused rather than added.
		ssh = append(ssh, "-o", "UserKnownHostsFile="+strings.Join(knownHosts, " "), "-o", "StrictHostKeyChecking=yes")
	}
	// sftp.args came with restic 0.16; before it, the whole ssh command
	// line goes in sftp.command, which then has to name the server itself.
	var opt string
	if v.atLeast(0, 16, 0) {
		opt = "sftp.args=" + shellJoin(ssh)
	} else {
		c, err := sftpCommand(credURLs[0], ssh)
		if err != nil {
			return nil, cleanup, err
		}
		opt = "sftp.command=" + c
	}
	o, err := csvField(opt)
	if err != nil {
		return nil, cleanup, err
	}
	return []string{"-o", o}, cleanup, nil
}

// oneSFTPServer refuses, for restic before 0.16 (sftp.command only), a run
// whose sftp repositories are on different servers (user, host or port):
// the one ssh command restic would run for both reaches only one of them.
func oneSFTPServer(urls []string, v resticVersion) error {
	var first string
	for i, u := range urls {
		user, host, port, err := parseSFTPURL(u)
		if err != nil {
			return err
		}
		if i == 0 {
			first = user + "@" + host + ":" + port
		} else if user+"@"+host+":"+port != first {
			return fmt.Errorf("restic %s runs one ssh command (sftp.command) for every sftp repository of a run, so it cannot reach two SFTP servers (or logins) at once: copying between them needs restic 0.16 or later (sftp.args)", v)
		}
	}
	return nil
}

// sftpCommand is the ssh command line restic 0.14 and 0.15 would build for
// the repository URL u (their sftp backend's buildSSHCommand), with extra
// ssh options.
func sftpCommand(u string, extra []string) (string, error) {
	user, host, port, err := parseSFTPURL(u)
	if err != nil {
		return "", err
	}
	args := []string{"ssh", host}
	if port != "" {
		args = append(args, "-p", port)
	}
	if user != "" {
		args = append(args, "-l", user)
	}
	args = append(args, extra...)
	args = append(args, "-s", "sftp")
	return shellJoin(args), nil
}

// parseSFTPURL reads user, host and port from restic's two sftp URL forms,
// "sftp://user@host:port/dir" and "sftp:user@host:dir", as restic does.
func parseSFTPURL(s string) (user, host, port string, err error) {
	if strings.HasPrefix(s, "sftp://") {
		p, err := url.Parse(s)
		if err != nil {
			return "", "", "", fmt.Errorf("sftp repository URL: %w", err)
		}
		if p.User != nil {
			user = p.User.Username()
		}
		host, port = p.Hostname(), p.Port()
	} else {
		rest := strings.TrimPrefix(s, "sftp:")
		h, _, ok := strings.Cut(rest, ":")
		if !ok {
			return "", "", "", errors.New("sftp repository URL: host or path not found")
		}
		if i := strings.LastIndex(h, "@"); i >= 0 {
			user, h = h[:i], h[i+1:]
		}
		host = h
	}
	if host == "" {
		return "", "", "", errors.New("sftp repository URL: no host")
	}
	return user, host, port, nil
}

// shellJoin joins arguments for restic's SplitShellStrings: an argument
// with white space or a backslash (a Windows path) is double-quoted.
// Arguments with a double quote are not made here (backendFiles refuses
// such file names; ssh options and hosts have none).
func shellJoin(args []string) string {
	q := make([]string, len(args))
	for i, a := range args {
		if a == "" || strings.ContainsAny(a, " \t\\'") {
			a = `"` + a + `"`
		}
		q[i] = a
	}
	return strings.Join(q, " ")
}

// csvField encodes an option for restic's -o, which is read as a CSV
// record (pflag's StringSlice): quotes and commas must be escaped.
func csvField(s string) (string, error) {
	var b bytes.Buffer
	w := csv.NewWriter(&b)
	if err := w.Write([]string{s}); err != nil {
		return "", err
	}
	w.Flush()
	if err := w.Error(); err != nil {
		return "", err
	}
	return strings.TrimSuffix(b.String(), "\n"), nil
}
