package runner

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net/url"
	"os"
	"sort"
	"strconv"
	"strings"
	"time"
)

// Environment variables Repo.Env must not set: the password and the
// repository reach restic through files (and RESTIC_PASSWORD_COMMAND would
// run a command).
var refusedEnv = map[string]bool{
	"RESTIC_PASSWORD":         true,
	"RESTIC_PASSWORD_FILE":    true,
	"RESTIC_PASSWORD_COMMAND": true,
	"RESTIC_REPOSITORY":       true,
	"RESTIC_REPOSITORY_FILE":  true,
	// A copy's source, and an init's chunker parameters, come through
	// --from-repository-file and --from-password-file.
	"RESTIC_FROM_PASSWORD":         true,
	"RESTIC_FROM_PASSWORD_FILE":    true,
	"RESTIC_FROM_PASSWORD_COMMAND": true,
	"RESTIC_FROM_REPOSITORY":       true,
	"RESTIC_FROM_REPOSITORY_FILE":  true,
}

// validateRepo refuses a repository restic would misread.
func validateRepo(r Repo) error {
	switch {
	case strings.TrimSpace(r.URL) == "":
		return errors.New("repository URL is empty")
	case strings.ContainsAny(r.URL, "\x00\r\n"):
		return errors.New("repository URL contains a line break or NUL byte")
	case r.Password == "":
		return errors.New("repository password is empty")
	case strings.ContainsRune(r.Password, 0):
		return errors.New("repository password contains a NUL byte")
	case strings.TrimSpace(r.Password) != r.Password:
		// restic trims the password file's content: the key would not match.
		return errors.New("repository password starts or ends with white space, which restic's --password-file drops")
	}
	for k, v := range r.Env {
		switch {
		case k == "" || strings.ContainsAny(k, "=\x00"):
			return fmt.Errorf("repository environment variable name %q is invalid", k)
		case refusedEnv[strings.ToUpper(k)]:
			return fmt.Errorf("repository environment variable %s refused: use Repo.URL and Repo.Password", k)
		case strings.ContainsRune(v, 0):
			return fmt.Errorf("repository environment variable %s contains a NUL byte", k)
		}
	}
	return nil
}

// repoKey is the Runner.Locks key of a repository: a hash, so that the URL
// (which may hold credentials) is not kept.
func repoKey(url string) string {
	h := sha256.Sum256([]byte(strings.TrimSpace(url)))
	return hex.EncodeToString(h[:])
}

// RedactURL drops the user information of a repository URL, for logs:
// "rest:https://u:p@host/r" → "rest:https://host/r", "sftp:u@host:/r" →
// "sftp:host:/r".
func RedactURL(u string) string {
	_, rest := splitUserinfo(strings.TrimSpace(u))
	return rest
}

// splitUserinfo returns the user information of a repository URL ("" when
// none) and the URL without it.
func splitUserinfo(u string) (info, rest string) {
	start := 0
	if i := strings.Index(u, "://"); i >= 0 {
		start = i + 3
	} else if strings.HasPrefix(u, "sftp:") {
		start = len("sftp:")
	} else {
		return "", u
	}
	r := u[start:]
	end := strings.IndexAny(r, "/?#")
	if end < 0 {
		end = len(r)
	}
	at := strings.LastIndex(r[:end], "@")
	if at < 0 {
		return "", u
	}
	return r[:at], u[:start] + r[at+1:]
}

// redactor replaces a run's secrets in text that leaves the runner (the
// stderr tail, error messages).
type redactor struct {
	r *strings.Replacer
}

const redacted = "[redacted]"

func newRedactor(repos ...Repo) *redactor {
	var secrets []string
	add := func(s string, min int) {
		if len(s) >= min {
			secrets = append(secrets, s)
		}
	}
	for _, repo := range repos {
		add(repo.Password, 4)
		add(strings.TrimSpace(repo.Password), 4)
		u := strings.TrimSpace(repo.URL)
		if info, _ := splitUserinfo(u); info != "" {
			// A URL with a password: the URL, and the password alone, also
			// percent-decoded. restic prints URLs with the password stripped:
			// this is a second line of defence.
			if _, pw, ok := strings.Cut(info, ":"); ok {
				add(u, 1)
				add(pw, 4)
				if dec, err := url.PathUnescape(pw); err == nil {
					add(dec, 4)
				}
			}
		}
		for k, v := range repo.Env {
			add(v, 8)
			if k == EnvSFTPKey {
				// A key's lines one by one too: ssh or restic may quote a
				// line of a key it cannot parse.
				for _, l := range strings.Split(v, "\n") {
					add(strings.TrimSpace(l), 16)
				}
			}
		}
	}
	if len(secrets) == 0 {
		return &redactor{}
	}
	// Longest first, so that a secret containing another is replaced whole.
	sort.Slice(secrets, func(i, j int) bool { return len(secrets[i]) > len(secrets[j]) })
	pairs := make([]string, 0, 2*len(secrets))
	for _, s := range secrets {
		pairs = append(pairs, s, redacted)
	}
	return &redactor{r: strings.NewReplacer(pairs...)}
}

func (r *redactor) redact(s string) string {
	if r == nil || r.r == nil {
		return s
	}
	return r.r.Replace(s)
}

// writeSecret writes s to a new file in dir, readable by its owner only, and
// returns its name.
func writeSecret(dir, pattern, s string) (name string, err error) {
	f, err := os.CreateTemp(dir, pattern) // created 0600
	if err != nil {
		return "", err
	}
	name = f.Name()
	defer func() {
		if err != nil {
			_ = os.Remove(name)
		}
	}()
	if err = f.Chmod(0o600); err != nil && !errors.Is(err, errors.ErrUnsupported) {
		f.Close()
		return "", err
	}
	if _, err = f.WriteString(s); err != nil {
		f.Close()
		return "", err
	}
	return name, f.Close()
}

// secretDir returns the directory for secret files and a function that
// removes it when it was made for this run only.
func (r *Runner) secretDir() (dir string, cleanup func(), err error) {
	if r.TempDir == "" {
		d, err := os.MkdirTemp("", "restic-manager-runner-*") // 0700
		if err != nil {
			return "", nil, err
		}
		return d, func() { _ = os.RemoveAll(d) }, nil
	}
	if err := os.MkdirAll(r.TempDir, 0o700); err != nil {
		return "", nil, err
	}
	fi, err := os.Lstat(r.TempDir)
	if err != nil {
		return "", nil, err
	}
	if !fi.IsDir() {
		return "", nil, fmt.Errorf("temp dir %s is not a directory", r.TempDir)
	}
	if err := checkPrivateDir(r.TempDir, fi); err != nil {
		return "", nil, err
	}
	return r.TempDir, func() {}, nil
}

// progressFPS is restic's status rate for a progress interval: 2 a second
// (without RESTIC_PROGRESS_FPS restic sends up to 60), more when the runner
// is to deliver progress more often, at most 10.
func progressFPS(interval time.Duration) string {
	fps := 2.0
	if interval > 0 && interval < 500*time.Millisecond {
		fps = min(10, float64(time.Second)/float64(interval))
	}
	return strconv.FormatFloat(fps, 'f', -1, 64)
}

// buildEnv is restic's whole environment: a few variables of ours, none that
// could carry a secret by accident (the agent's own environment may hold
// RESTIC_PASSWORD and the like), and the repository's backend variables.
// fps, when not empty, is RESTIC_PROGRESS_FPS.
func buildEnv(fps string, repoEnv map[string]string) []string {
	var env []string
	for _, k := range baseEnvKeys {
		if v, ok := os.LookupEnv(k); ok && v != "" {
			env = append(env, k+"="+v)
		}
	}
	if fps != "" {
		env = append(env, "RESTIC_PROGRESS_FPS="+fps)
	}
	// TODO: sealed delivery replaces this: backend credentials in the
	// environment are readable in /proc/PID/environ by the same user (restic
	// issue 3545). Never log them.
	keys := make([]string, 0, len(repoEnv))
	for k, v := range repoEnv {
		// The SFTP key and known_hosts reach ssh as files (backendFiles).
		if v != "" && !fileOnlyEnv[k] {
			keys = append(keys, k)
		}
	}
	sort.Strings(keys)
	for _, k := range keys {
		env = append(env, k+"="+repoEnv[k])
	}
	return env
}

// checkPairedEnv refuses two repositories of one run (a copy, an init
// taking another repository's chunker parameters) whose backend variables
// differ under the same name. restic reads both repositories' backends
// from one environment (there is no RESTIC_FROM_ form of AWS_ACCESS_KEY_ID
// and the like), so a copy between two S3 accounts would open one of them
// with the other's keys; better a clear refusal than that.
//
// The SFTP key and known_hosts are not read from the environment: each
// repository's reach ssh as files of their own (backendFiles), so two
// SFTP repositories may have different ones.
func checkPairedEnv(main, from Repo) error {
	var clash []string
	for k, v := range from.Env {
		if mv, ok := main.Env[k]; ok && mv != v && !fileOnlyEnv[k] {
			clash = append(clash, k)
		}
	}
	if len(clash) == 0 {
		return nil
	}
	sort.Strings(clash)
	return fmt.Errorf("the two repositories set %s to different values: restic reads one environment for both, so they must share these backend credentials (or use a backend whose credentials are in the URL or the other repository's variables)", strings.Join(clash, ", "))
}

// mergeEnv is the environment of a run on two repositories whose variables
// checkPairedEnv accepted.
func mergeEnv(main, from map[string]string) map[string]string {
	env := make(map[string]string, len(main)+len(from))
	for k, v := range from {
		env[k] = v
	}
	for k, v := range main {
		env[k] = v
	}
	return env
}
