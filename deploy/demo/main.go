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
	client          *http.Client
	procs           []*exec.Cmd
}

func run() error {
	var d demo
	flag.StringVar(&d.dir, "dir", ".demo", "state directory (wiped at start)")
	flag.StringVar(&d.bin, "bin", "bin", "directory holding the built binaries")
	flag.StringVar(&d.tools, "tools", ".tools/bin", "directory holding restic and rest-server")
	flag.StringVar(&d.httpAddr, "http", "127.0.0.1:8080", "console address")
	mqttAddr := flag.String("mqtt", "127.0.0.1:1883", "broker address")
	restAddr := flag.String("rest", "127.0.0.1:8000", "rest-server address")
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

	if err := d.start("rest-server", filepath.Join(d.tools, "rest-server"), nil,
		"--path", filepath.Join(d.dir, "repos"), "--listen", *restAddr, "--no-auth"); err != nil {
		return err
	}
	if err := d.start("server", filepath.Join(d.bin, "restic-manager"), []string{"RM_ADMIN_PASSWORD=" + adminPassword},
		"server", "--insecure", "--data", filepath.Join(d.dir, "server"), "--http", d.httpAddr, "--mqtt", *mqttAddr); err != nil {
		return err
	}
	if err := d.waitHealthy(ctx); err != nil {
		return err
	}
	jar, _ := cookiejar.New(nil)
	d.client = &http.Client{Jar: jar, Timeout: 30 * time.Second}
	if err := d.api("POST", "/api/v1/login", map[string]string{"username": "admin", "password": adminPassword}, nil); err != nil {
		return err
	}

	var host struct {
		ID          string `json:"id"`
		EnrollToken string `json:"enroll_token"`
	}
	if err := d.api("POST", "/api/v1/hosts", map[string]string{"name": "this-machine"}, &host); err != nil {
		return err
	}
	resticBin, _ := filepath.Abs(filepath.Join(d.tools, "restic"))
	agentCfg := filepath.Join(d.dir, "agent", "agent.yaml")
	enroll := exec.CommandContext(ctx, filepath.Join(d.bin, "restic-manager-agent"), "enroll",
		"--server", "http://"+d.httpAddr, "--token", host.EnrollToken, "--config", agentCfg, "--restic", resticBin)
	if out, err := enroll.CombinedOutput(); err != nil {
		return fmt.Errorf("enroll: %v: %s", err, out)
	}
	if err := d.start("agent", filepath.Join(d.bin, "restic-manager-agent"), nil, "run", "--config", agentCfg); err != nil {
		return err
	}

	var repo struct {
		ID string `json:"id"`
	}
	if err := d.api("POST", "/api/v1/repos", map[string]any{"name": "demo", "url": "rest:http://" + *restAddr + "/demo/", "password": repoPassword}, &repo); err != nil {
		return err
	}
	if err := d.runJob(ctx, host.ID, map[string]any{"kind": "init", "repo_id": repo.ID}); err != nil {
		return err
	}
	src, _ := filepath.Abs("deploy")
	if err := d.runJob(ctx, host.ID, map[string]any{"kind": "backup", "repo_id": repo.ID, "args": map[string]any{"paths": []string{src}, "tags": []string{"demo"}}}); err != nil {
		return err
	}

	fmt.Printf(`
restic-manager demo is running.

  Console:  http://%s
  Login:    admin / %s
  Broker:   mqtt://%s
  Repo:     rest:http://%s/demo/ (a first backup of %s is in it)

Logs are in %s. Press Ctrl-C to stop everything.
`, d.httpAddr, adminPassword, *mqttAddr, *restAddr, src, d.dir)

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
		resp, err := http.Get("http://" + d.httpAddr + "/healthz")
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
	req, _ := http.NewRequest(method, "http://"+d.httpAddr+path, bytes.NewReader(b))
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
