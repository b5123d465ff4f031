package e2e

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

func TestEnrolmentPinsTheCA(t *testing.T) {
	s := newServer(t)
	other := newServer(t) // another data directory: another CA
	if s.CAFingerprint == other.CAFingerprint {
		t.Fatal("two servers share a CA")
	}
	h := s.createHost("pinned")
	if !strings.Contains(h.EnrollCommand, "--ca-fingerprint "+s.CAFingerprint) || !strings.HasPrefix(strings.Fields(h.EnrollCommand)[3], "https://") {
		t.Fatalf("enroll command %q lacks https or the CA fingerprint", h.EnrollCommand)
	}
	_, bin := binaries(t)
	cfg := filepath.Join(t.TempDir(), "agent.yaml")
	// The wrong fingerprint: the handshake is refused, the token stays unused.
	out, err := exec.Command(bin, "enroll", "--server", s.URL(""), "--token", h.EnrollToken, "--config", cfg, "--ca-fingerprint", other.CAFingerprint).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "pinned CA") {
		t.Fatalf("enrolment against the wrong CA: %v\n%s", err, out)
	}
	// Without a fingerprint, a private CA is not trusted either.
	if out, err := exec.Command(bin, "enroll", "--server", s.URL(""), "--token", h.EnrollToken, "--config", cfg).CombinedOutput(); err == nil {
		t.Fatalf("enrolment trusted an unknown CA:\n%s", out)
	}
	a := enrollAgent(t, s, h.EnrollToken, testenv.Restic(t))
	a.start(t)
	s.waitOnline(h.ID, true)

	// The same agent, pointed at a server with another certificate on the
	// same address, refuses it and never comes online there.
	stop(t, a.Proc)
	stop(t, s.Proc)
	impostor := startServer(t, t.TempDir(), s.HTTPAddr, s.MQTTAddr)
	a.start(t)
	eventually(t, 30*time.Second, "the agent to refuse the impostor", func() error {
		if !strings.Contains(a.Proc.Output(), "pinned CA") {
			return errorf("no pin failure logged yet")
		}
		return nil
	})
	if strings.Contains(impostor.Proc.Output(), "host="+h.ID) {
		t.Errorf("the impostor saw the agent's credential:\n%s", impostor.Proc.Output())
	}
}

func TestInsecureModeForDevelopment(t *testing.T) {
	s := startServerMode(t, t.TempDir(), testenv.FreePort(t), testenv.FreePort(t), true)
	if !strings.Contains(s.Proc.Output(), "UNENCRYPTED") {
		t.Error("--insecure does not warn loudly")
	}
	h := s.createHost("dev")
	if strings.Contains(h.EnrollCommand, "--ca-fingerprint") || !strings.Contains(h.EnrollCommand, "http://") {
		t.Errorf("insecure enroll command %q", h.EnrollCommand)
	}
	a := enrollAgent(t, s, h.EnrollToken, testenv.Restic(t))
	a.start(t)
	s.waitOnline(h.ID, true)
}

func TestRevokedHostIsDisconnectedAndStaysOut(t *testing.T) {
	s := newServer(t)
	h := s.createHost("to-revoke")
	a := enrollAgent(t, s, h.EnrollToken, testenv.Restic(t))
	a.start(t)
	s.waitOnline(h.ID, true)

	s.do("POST", "/api/v1/hosts/"+h.ID+"/revoke", nil, nil, 200)
	s.waitOnline(h.ID, false)
	// The agent keeps trying; every attempt is refused.
	eventually(t, 30*time.Second, "a refused reconnect", func() error {
		if !strings.Contains(s.Proc.Output(), "connect refused: bad credential") {
			return errorf("no refusal logged yet")
		}
		return nil
	})
	time.Sleep(3 * time.Second)
	if s.host(h.ID).Online {
		t.Fatal("a revoked host came back online")
	}
	// A new token re-enrols the machine with a fresh credential.
	var tok struct {
		EnrollToken string `json:"enroll_token"`
	}
	s.do("POST", "/api/v1/hosts/"+h.ID+"/enroll-token", nil, &tok, 201)
	stop(t, a.Proc)
	a2 := enrollAgent(t, s, tok.EnrollToken, testenv.Restic(t))
	a2.start(t)
	s.waitOnline(h.ID, true)
}

func TestMissingResticIsAClearJobError(t *testing.T) {
	s := newServer(t)
	h := s.createHost("no-restic")
	a := enrollAgent(t, s, h.EnrollToken, filepath.Join(t.TempDir(), "no-such-restic"))
	a.start(t)
	s.waitOnline(h.ID, true)
	repo := s.createRepo("r", "/srv/nowhere", "pw", h.ID)
	id := s.createJob(h.ID, map[string]any{"kind": "init", "repo_id": repo})
	j := s.waitJob(id, time.Minute)
	if j.Status != "failed" || !strings.Contains(j.Error, "restic is not usable") {
		t.Fatalf("job without restic: %s %q", j.Status, j.Error)
	}
}
