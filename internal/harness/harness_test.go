package harness

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestPoll(t *testing.T) {
	ctx := context.Background()
	n := 0
	if err := Poll(ctx, time.Second, func() error {
		if n++; n < 3 {
			return errors.New("not yet")
		}
		return nil
	}); err != nil || n != 3 {
		t.Fatalf("Poll: %v after %d calls", err, n)
	}
	err := Poll(ctx, 250*time.Millisecond, func() error { return errors.New("never") })
	if err == nil || !strings.Contains(err.Error(), "timed out") || !strings.Contains(err.Error(), "never") {
		t.Fatalf("timeout: %v", err)
	}
	gone := errors.New("gone")
	n = 0
	err = Poll(ctx, time.Minute, func() error { n++; return Permanent(gone) })
	if err != gone || n != 1 {
		t.Fatalf("permanent: %v after %d calls", err, n)
	}
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if err := Poll(cctx, time.Minute, func() error { return errors.New("x") }); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled: %v", err)
	}
}

func TestProc(t *testing.T) {
	// Output in memory; SIGTERM ends it.
	p, err := Start(Cmd{Name: "sleeper", Bin: "/bin/sh", Args: []string{"-c", `echo "hello $GREETING"; exec sleep 60`}, Env: []string{"GREETING=world"}})
	if err != nil {
		t.Fatal(err)
	}
	if err := Poll(context.Background(), 10*time.Second, func() error {
		if !strings.Contains(p.Output(), "hello world") {
			return fmt.Errorf("output %q", p.Output())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if p.Exited() != nil || p.ExitCode() != -1 {
		t.Fatal("running process reported as exited")
	}
	if err := p.Stop(10 * time.Second); err != nil {
		t.Fatal(err)
	}
	if err := p.Exited(); err == nil || !strings.Contains(err.Error(), "sleeper exited") {
		t.Fatalf("Exited after Stop: %v", err)
	}
	p.Kill() // after the exit: returns at once

	// A process that ignores SIGTERM is killed, and Stop says so; output
	// goes to the log file.
	log := filepath.Join(t.TempDir(), "out.log")
	p, err = Start(Cmd{Name: "stubborn", Bin: "/bin/sh", Args: []string{"-c", `trap "" TERM; echo ready; while :; do sleep 0.1; done`}, Log: log})
	if err != nil {
		t.Fatal(err)
	}
	if err := Poll(context.Background(), 10*time.Second, func() error {
		if p.Output() != "ready\n" {
			return errors.New("not ready")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := p.Stop(300 * time.Millisecond); err == nil || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("Stop of a process ignoring SIGTERM: %v", err)
	}
	if err := p.Exited(); err == nil || !strings.Contains(err.Error(), log) {
		t.Fatalf("Exited names no log: %v", err)
	}
}

func TestClient(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case r.URL.Path == "/api/v1/hosts" && r.Method == "POST":
			if r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
				w.WriteHeader(http.StatusUnauthorized)
				return
			}
			w.WriteHeader(http.StatusCreated)
			fmt.Fprint(w, `{"id":"h1","enroll_token":"rme_x"}`)
		case r.URL.Path == "/api/v1/jobs":
			// Three pages of one job each.
			switch r.URL.Query().Get("cursor") {
			case "":
				w.Header().Set("X-Next-Cursor", "a b")
				fmt.Fprint(w, `[{"id":"j1","status":"succeeded"}]`)
			case "a b":
				w.Header().Set("X-Next-Cursor", "c")
				fmt.Fprint(w, `[{"id":"j2","status":"running","progress":{"seq":7}}]`)
			default:
				fmt.Fprint(w, `[{"id":"j3","status":"queued"}]`)
			}
		default:
			http.Error(w, "no such thing", http.StatusNotFound)
		}
	}))
	defer srv.Close()
	ctx := context.Background()
	c := &Client{Base: srv.URL, HTTP: srv.Client(), Token: "tok"}
	h, err := c.CreateHost(ctx, "web")
	if err != nil || h.ID != "h1" || h.EnrollToken != "rme_x" {
		t.Fatalf("CreateHost: %+v %v", h, err)
	}
	var apiErr *APIError
	if err := c.Expect(ctx, "GET", "/nothing", nil, nil, 200); !errors.As(err, &apiErr) || apiErr.Status != 404 || apiErr.Want != 200 {
		t.Fatalf("Expect: %v", err)
	}
	if err := c.Do(ctx, "GET", "/nothing", nil, nil); !errors.As(err, &apiErr) || apiErr.Want != 0 || !strings.Contains(err.Error(), "no such thing") {
		t.Fatalf("Do: %v", err)
	}
	if err := c.Expect(ctx, "POST", "/api/v1/hosts", nil, nil, 200); err == nil {
		t.Fatal("Expect took 201 for 200")
	}
	jobs, err := c.Jobs(ctx, 1)
	if err != nil || len(jobs) != 3 || jobs[1].Seq() != 7 || jobs[0].Seq() != 0 {
		t.Fatalf("Jobs: %+v %v", jobs, err)
	}
	if !Terminal(jobs[0].Status) || Terminal(jobs[1].Status) {
		t.Fatal("Terminal")
	}
}
