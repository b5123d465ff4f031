package e2e

import (
	"bytes"
	"crypto/rand"
	"encoding/hex"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

// scanFiles reports the files under dir that contain any needle.
func scanFiles(t *testing.T, dir string, needles ...string) []string {
	t.Helper()
	var hits []string
	_ = filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() || !fi.Mode().IsRegular() {
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return nil
		}
		for _, n := range needles {
			if bytes.Contains(b, []byte(n)) {
				hits = append(hits, p+" holds "+n[:4]+"…")
			}
		}
		return nil
	})
	return hits
}

// resticProcs returns argv and environ of every running restic process.
func resticProcs() []string {
	var out []string
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil {
			continue
		}
		cmd, err := os.ReadFile("/proc/" + e.Name() + "/cmdline")
		if err != nil || !bytes.Contains(cmd, []byte("restic")) || bytes.Contains(cmd, []byte("rest-server")) {
			continue
		}
		env, _ := os.ReadFile("/proc/" + e.Name() + "/environ")
		out = append(out, string(cmd)+"\x00"+string(env))
	}
	return out
}

// A full run (enrol, backup, restore, forget) leaves the repository password
// and the backend credential nowhere but where they must be: not in the
// broker's persistence, the console's store, the agent's state, any log, nor
// restic's argv or environment.
func TestSecretsDoNotLeak(t *testing.T) {
	s := newServer(t)
	repoPassword := "repo-pw-" + randomHex(12)
	backendPassword := "backend-pw-" + randomHex(12)
	hash, err := bcrypt.GenerateFromPassword([]byte(backendPassword), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	root := t.TempDir()
	htpasswd := filepath.Join(t.TempDir(), "htpasswd")
	if err := os.WriteFile(htpasswd, []byte("web1:"+string(hash)+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	addr := testenv.FreePort(t)
	start(t, "rest-server", nil, testenv.RestServer(t), "--path", root, "--listen", addr, "--htpasswd-file", htpasswd)
	time.Sleep(500 * time.Millisecond)
	repoURL := "rest:http://web1:" + backendPassword + "@" + addr + "/web1/"

	h := s.createHost("leak-check")
	a := enrollAgent(t, s, h.EnrollToken, testenv.Restic(t))
	a.start(t)
	s.waitOnline(h.ID, true)
	f := &fleet{srv: s, host: h, agent: a, repoURL: repoURL, password: repoPassword}
	marker := "plain-marker-" + randomHex(8) // a record that is not secret
	f.repoID = s.createRepo(marker, repoURL, repoPassword, h.ID)
	f.initRepo(t)

	// Watch restic's argv and environment while the jobs run.
	var mu sync.Mutex
	var seen []string
	quit := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-quit:
				return
			case <-time.After(20 * time.Millisecond):
			}
			procs := resticProcs()
			mu.Lock()
			seen = append(seen, procs...)
			mu.Unlock()
		}
	}()
	src := t.TempDir()
	for i := range 3 {
		big := make([]byte, 16<<20)
		_, _ = rand.Read(big)
		_ = os.WriteFile(filepath.Join(src, "f"+strconv.Itoa(i)), big, 0o644)
	}
	b1 := f.run(t, "backup", map[string]any{"paths": []string{src}})
	f.run(t, "backup", map[string]any{"paths": []string{src}})
	f.run(t, "restore", map[string]any{"snapshot_id": b1.SnapshotID, "target_path": t.TempDir()})
	f.run(t, "forget", map[string]any{"retention": map[string]any{"keep_last": 1}, "prune": true})
	close(quit)
	<-done
	if len(seen) == 0 {
		t.Fatal("never saw a restic process: the /proc check would be vacuous")
	}
	for _, p := range seen {
		if strings.Contains(p, repoPassword) || strings.Contains(p, backendPassword) {
			t.Fatalf("a restic process carried a secret in argv or environ: %q", p)
		}
	}

	stop(t, a.Proc)
	stop(t, s.Proc)
	needles := []string{repoPassword, backendPassword}
	// Not vacuous: plain records are readable in the same files.
	if len(scanFiles(t, s.Data, marker)) == 0 {
		t.Fatal("the repository name is not found in the data dir: the scan cannot see plaintext")
	}
	for _, dir := range []string{s.Data, filepath.Dir(a.Config)} {
		if hits := scanFiles(t, dir, needles...); len(hits) > 0 {
			t.Errorf("secrets at rest: %v", hits)
		}
	}
	for name, out := range map[string]string{"server": s.Proc.Output(), "agent": a.Proc.Output()} {
		for _, n := range needles {
			if strings.Contains(out, n) {
				t.Errorf("the %s log holds a secret", name)
			}
		}
	}
}
