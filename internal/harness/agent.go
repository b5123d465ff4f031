package harness

import (
	"context"
	"fmt"
	"os/exec"
)

// Agent is a host enrolled with the real agent binary: its config and,
// once started, its process.
type Agent struct {
	Bin    string // the restic-manager-agent binary
	Config string // its config file (the state directory is beside it)
	Restic string // the restic it runs
	Proc   *Proc  // the last process Start started
}

// EnrollAgent runs `restic-manager-agent enroll` with a host's token
// against s, writing the agent's config at config.
func EnrollAgent(ctx context.Context, bin string, s *Server, token, restic, config string) (*Agent, error) {
	args := []string{"enroll", "--server", s.URL(""), "--token", token, "--config", config, "--restic", restic}
	if s.CAFingerprint != "" {
		args = append(args, "--ca-fingerprint", s.CAFingerprint)
	}
	if out, err := exec.CommandContext(ctx, bin, args...).CombinedOutput(); err != nil {
		return nil, fmt.Errorf("enroll: %w\n%s", err, out)
	}
	return &Agent{Bin: bin, Config: config, Restic: restic}, nil
}

// Start runs the agent (`run --config`). The caller owns the process.
func (a *Agent) Start() (*Proc, error) {
	p, err := Start(Cmd{Name: "agent", Bin: a.Bin, Args: []string{"run", "--config", a.Config}})
	if err != nil {
		return nil, err
	}
	a.Proc = p
	return p, nil
}
