// Package harness runs restic-manager's real programs (the server, the
// agent, rest-server) as child processes on loopback and drives the control
// plane through its public API, for the end-to-end tests and the fleet
// simulator.
//
// Everything here returns errors and takes a context for what blocks; the
// caller owns what it starts and must stop it (tests do that in
// t.Cleanup, the simulator when it ends).
package harness

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Cmd describes a child process to start.
type Cmd struct {
	Name string   // for messages: "server", "agent", ...
	Bin  string   // the program
	Args []string // its arguments
	Env  []string // KEY=VALUE added to this process's environment
	// Log is a file that receives the output; "" keeps it in memory for
	// Output (the tests read it; the simulator's server writes too much).
	Log string
}

// Proc is a started child process.
type Proc struct {
	name string
	log  string
	cmd  *exec.Cmd
	out  *syncBuffer // nil with a log file
	done chan struct{}
}

// Start starts the process. The caller owns it: Stop or Kill it.
func Start(c Cmd) (*Proc, error) {
	p := &Proc{name: c.Name, log: c.Log, done: make(chan struct{})}
	p.cmd = exec.Command(c.Bin, c.Args...)
	p.cmd.Env = append(os.Environ(), c.Env...)
	var logf *os.File
	if c.Log != "" {
		var err error
		if logf, err = os.Create(c.Log); err != nil {
			return nil, fmt.Errorf("%s log: %w", c.Name, err)
		}
		p.cmd.Stdout, p.cmd.Stderr = logf, logf
	} else {
		p.out = &syncBuffer{}
		p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	}
	if err := p.cmd.Start(); err != nil {
		if logf != nil {
			logf.Close()
		}
		return nil, fmt.Errorf("start %s: %w", c.Name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		if logf != nil {
			logf.Close()
		}
		close(p.done)
	}()
	return p, nil
}

// Name is the name the process was started with.
func (p *Proc) Name() string { return p.name }

// Pid is the process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited.
func (p *Proc) Done() <-chan struct{} { return p.done }

// Exited is nil while the process runs and says how it ended after.
func (p *Proc) Exited() error {
	select {
	case <-p.done:
		if p.log != "" {
			return fmt.Errorf("%s exited: %s (log: %s)", p.name, p.cmd.ProcessState, p.log)
		}
		return fmt.Errorf("%s exited: %s", p.name, p.cmd.ProcessState)
	default:
		return nil
	}
}

// ExitCode is the exit status once the process has exited (-1 before, or
// when a signal ended it).
func (p *Proc) ExitCode() int {
	select {
	case <-p.done:
		return p.cmd.ProcessState.ExitCode()
	default:
		return -1
	}
}

// Output is everything the process wrote so far (read back from the log
// file when it has one).
func (p *Proc) Output() string {
	if p.out != nil {
		return p.out.String()
	}
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// Signal sends sig to the process.
func (p *Proc) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop sends SIGTERM and waits up to timeout for the process to exit; one
// still running then is killed, and Stop says so.
func (p *Proc) Stop(timeout time.Duration) error {
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return nil
	case <-time.After(timeout):
		p.Kill()
		return fmt.Errorf("%s did not stop within %s of SIGTERM (killed)", p.name, timeout)
	}
}

// Kill is kill -9, with no clean-up of any kind, and waits for the exit.
func (p *Proc) Kill() {
	_ = p.cmd.Process.Kill() // fails only when it has exited already
	<-p.done
}

// syncBuffer is a bytes.Buffer safe for the process's two writers and the
// test's readers.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
