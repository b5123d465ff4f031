// Command demo starts a complete local restic-manager on this machine: the
// server, a rest-server holding the repository, one enrolled agent, an
// initialised repository and a first backup. It prints the URL and login and
// stops everything it started on Ctrl-C. Run it with `make demo`.
package main

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/restic-manager/restic-manager/internal/tlsutil"
)

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "demo:", err)
		os.Exit(1)
	}
}

type demo struct {
	dir, bin, tools string
	httpAddr        string
	fingerprint     string
	client          *http.Client
	procs           []*exec.Cmd
}

// waitCA waits for the server's generated CA and returns its fingerprint.
func (d *demo) waitCA(ctx context.Context, path string) (string, error) {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		if b, err := os.ReadFile(path); err == nil {
			if blk, _ := pem.Decode(b); blk != nil {
				return tlsutil.Fingerprint(blk.Bytes), nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return "", fmt.Errorf("the server made no CA; see %s", filepath.Join(d.dir, "server.log"))
}

// enrollAgent creates a host, enrols an agent for it (its own config and
// state) and starts it.
func (d *demo) enrollAgent(ctx context.Context, name string) (string, error) {
	var host struct {
		ID          string `json:"id"`
		EnrollToken string `json:"enroll_token"`
	}
	if err := d.api("POST", "/api/v1/hosts", map[string]string{"name": name}, &host); err != nil {
		return "", err
	}
	resticBin, _ := filepath.Abs(filepath.Join(d.tools, "restic"))
	cfg := filepath.Join(d.dir, "agent-"+name, "agent.yaml")
	enroll := exec.CommandContext(ctx, filepath.Join(d.bin, "restic-manager-agent"), "enroll",
		"--server", "https://"+d.httpAddr, "--token", host.EnrollToken, "--ca-fingerprint", d.fingerprint,
		"--config", cfg, "--restic", resticBin)
	if out, err := enroll.CombinedOutput(); err != nil {
		return "", fmt.Errorf("enroll %s: %v: %s", name, err, out)
	}
	return host.ID, d.start("agent-"+name, filepath.Join(d.bin, "restic-manager-agent"), nil, "run", "--config", cfg)
}

func run() error {
	var d demo
	flag.StringVar(&d.dir, "dir", ".demo", "state directory (wiped at start)")
	flag.StringVar(&d.bin, "bin", "bin", "directory holding the built binaries")
	flag.StringVar(&d.tools, "tools", ".tools/bin", "directory holding restic and rest-server")
	flag.StringVar(&d.httpAddr, "http", "127.0.0.1:8080", "console address")
	mqttAddr := flag.String("mqtt", "127.0.0.1:1883", "broker address")
	restAddr := flag.String("rest", "127.0.0.1:8000", "append-only rest-server address (what endpoints use)")
	maintAddr := flag.String("rest-maintenance", "127.0.0.1:8001", "maintenance rest-server address (loopback, full access)")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	defer d.stopAll()

	if err := os.RemoveAll(d.dir); err != nil {
		return err
	}
	if err := os.MkdirAll(d.dir, 0o700); err != nil {
		return err
	}
	abs, _ := filepath.Abs(d.dir)
	d.dir = abs
	adminPassword := randomHex(12)
	repoPassword := randomHex(16)

	// Two rest-servers over the same directory: endpoints get the
	// append-only one, deletions happen only through the other (rest-server's
	// append-only mode is per instance).
	repos := filepath.Join(d.dir, "repos")
	if err := d.start("rest-server", filepath.Join(d.tools, "rest-server"), nil,
		"--path", repos, "--listen", *restAddr, "--no-auth", "--append-only"); err != nil {
		return err
	}
	if err := d.start("rest-server-maintenance", filepath.Join(d.tools, "rest-server"), nil,
		"--path", repos, "--listen", *maintAddr, "--no-auth"); err != nil {
		return err
	}
	dataDir := filepath.Join(d.dir, "server")
	if err := d.start("server", filepath.Join(d.bin, "restic-manager"), []string{"RM_ADMIN_PASSWORD=" + adminPassword},
		"server", "--data", dataDir, "--http", d.httpAddr, "--mqtt", *mqttAddr); err != nil {
		return err
	}
	fp, err := d.waitCA(ctx, filepath.Join(dataDir, "tls", "ca.pem"))
	if err != nil {
		return err
	}
	d.fingerprint = fp
	jar, _ := cookiejar.New(nil)
	d.client = &http.Client{Jar: jar, Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: tlsutil.ClientConfig(fp, "127.0.0.1")}}
	if err := d.waitHealthy(ctx); err != nil {
		return err
	}
	if err := d.api("POST", "/api/v1/login", map[string]string{"username": "admin", "password": adminPassword}, nil); err != nil {
		return err
	}

	hostID, err := d.enrollAgent(ctx, "this-machine")
	if err != nil {
		return err
	}
	maintID, err := d.enrollAgent(ctx, "maintenance")
	if err != nil {
		return err
	}

	var repo struct {
		ID string `json:"id"`
	}
	if err := d.api("POST", "/api/v1/repos", map[string]any{
		"name": "demo", "url": "rest:http://" + *restAddr + "/demo/", "password": repoPassword,
		"maintenance": map[string]any{"url": "rest:http://" + *maintAddr + "/demo/", "host_id": maintID},
		"hosts":       []string{hostID},
	}, &repo); err != nil {
		return err
	}
	host := struct{ ID string }{hostID}
	if err := d.runJob(ctx, host.ID, map[string]any{"kind": "init", "repo_id": repo.ID}); err != nil {
		return err
	}
	src, _ := filepath.Abs("deploy")
	if err := d.runJob(ctx, host.ID, map[string]any{"kind": "backup", "repo_id": repo.ID, "args": map[string]any{"paths": []string{src}, "tags": []string{"demo"}}}); err != nil {
		return err
	}
	// A nightly backup and a weekly forget+prune; the forget runs on the
	// maintenance host, never on the endpoint.
	if err := d.api("PUT", "/api/v1/hosts/"+host.ID+"/schedules", []map[string]any{
		{"name": "nightly", "kind": "backup", "cron": "0 2 * * *", "enabled": true, "repo_id": repo.ID, "paths": []string{src}, "tags": []string{"nightly"}},
		{"name": "weekly-forget", "kind": "forget", "cron": "0 4 * * 0", "enabled": true, "repo_id": repo.ID,
			"retention": map[string]any{"keep_daily": 7, "keep_weekly": 4, "keep_within": "14d"}, "prune": true},
	}, nil); err != nil {
		return err
	}

	fmt.Printf(`
restic-manager demo is running.

  Console:  https://%s  (a certificate from the demo's own CA: accept it in the browser,
            or pin its SHA-256 fingerprint %s)
  Login:    admin / %s
  Broker:   mqtts://%s
  Hosts:    this-machine (endpoint, append-only credentials) and maintenance
  Repo:     rest:http://%s/demo/ (append-only; forget and prune go through %s
            on the maintenance host). A first backup of %s is in it, a nightly
            backup and a weekly forget are scheduled.

Logs are in %s. Press Ctrl-C to stop everything.
`, d.httpAddr, d.fingerprint, adminPassword, *mqttAddr, *restAddr, *maintAddr, src, d.dir)

	<-ctx.Done()
	fmt.Println("\nstopping demo")
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}

func (d *demo) start(name, bin string, env []string, args ...string) error {
	logf, err := os.Create(filepath.Join(d.dir, name+".log"))
	if err != nil {
		return err
	}
	cmd := exec.Command(bin, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = logf, logf
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("start %s: %w", name, err)
	}
	d.procs = append(d.procs, cmd)
	return nil
}

// stopAll stops children in reverse order of start, gently first.
func (d *demo) stopAll() {
	for i := len(d.procs) - 1; i >= 0; i-- {
		p := d.procs[i]
		_ = p.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = p.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(15 * time.Second):
			_ = p.Process.Kill()
			<-done
		}
	}
}

func (d *demo) waitHealthy(ctx context.Context) error {
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		resp, err := d.client.Get("https://" + d.httpAddr + "/healthz")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == 200 {
				return nil
			}
		}
		time.Sleep(200 * time.Millisecond)
	}
	return fmt.Errorf("server did not become healthy; see %s", filepath.Join(d.dir, "server.log"))
}

func (d *demo) api(method, path string, body, out any) error {
	b, _ := json.Marshal(body)
	req, _ := http.NewRequest(method, "https://"+d.httpAddr+path, bytes.NewReader(b))
	req.Header.Set("Content-Type", "application/json")
	resp, err := d.client.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(resp.Body)
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("%s %s: %s: %s", method, path, resp.Status, rb)
	}
	if out != nil {
		return json.Unmarshal(rb, out)
	}
	return nil
}

func (d *demo) runJob(ctx context.Context, hostID string, body map[string]any) error {
	var created struct {
		JobID string `json:"job_id"`
	}
	if err := d.api("POST", "/api/v1/hosts/"+hostID+"/jobs", body, &created); err != nil {
		return err
	}
	fmt.Printf("running %s job %s ...\n", body["kind"], created.JobID)
	for ctx.Err() == nil {
		var j struct {
			Status, Error string
		}
		if err := d.api("GET", "/api/v1/jobs/"+created.JobID, nil, &j); err != nil {
			return err
		}
		switch j.Status {
		case "succeeded", "partial":
			return nil
		case "failed", "cancelled", "expired":
			return fmt.Errorf("%s job %s: %s", body["kind"], j.Status, j.Error)
		}
		time.Sleep(300 * time.Millisecond)
	}
	return errors.New("interrupted")
}
