package agentcmd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// Grace is how long a cancelled command's process group has between
// SIGTERM and SIGKILL (pg_dump and mariadb-dump exit within a second).
var Grace = 5 * time.Second

// Errors of an Outcome that tell why a command ended without its own
// exit status deciding.
var (
	ErrTimedOut  = errors.New("timed out")
	ErrCancelled = errors.New("cancelled")
)

// Outcome is how a command ended.
type Outcome struct {
	ExitCode int // -1 when it never started or a signal ended it
	Duration time.Duration
	// Tail is the last wire.MaxHookTail bytes of its output (stdout and
	// stderr, or stderr alone when stdout went elsewhere), with the
	// definition's environment values redacted.
	Tail string
	// Err is set when it did not start, timed out or was cancelled.
	Err error
}

// OK reports whether the command ran and exited 0.
func (o Outcome) OK() bool { return o.Err == nil && o.ExitCode == 0 }

// Error is a one-line description of a failure ("" when OK).
func (o Outcome) Error() string {
	switch {
	case o.Err != nil:
		return o.Err.Error()
	case o.ExitCode != 0:
		return fmt.Sprintf("exit code %d", o.ExitCode)
	}
	return ""
}

// Run runs s to its end with extra environment variables (the job's
// RM_* facts), its output kept as a tail.
func Run(ctx context.Context, s Spec, extra map[string]string) Outcome {
	p, err := Start(ctx, s, extra, nil, nil)
	if err != nil {
		return Outcome{ExitCode: -1, Err: err}
	}
	return p.Wait()
}

// Proc is a started command.
type Proc struct {
	cmd     *exec.Cmd
	ctx     context.Context
	cancel  context.CancelFunc
	tail    *tailWriter
	spec    Spec
	started time.Time
	group   processGroup
	killed  sync.Once
	done    chan struct{} // closed by Wait: no delayed kill after it
	grace   time.Duration
}

// Start starts s with stdin (nil: none) and its standard output into
// stdout (nil: into the tail with stderr). The command is killed with its
// process group when ctx ends or s.Timeout passes; Wait must be called.
func Start(ctx context.Context, s Spec, extra map[string]string, stdin io.Reader, stdout io.Writer) (*Proc, error) {
	if len(s.Argv) == 0 {
		return nil, fmt.Errorf("%s: no command", s.Name)
	}
	p := &Proc{spec: s, tail: newTailWriter(wire.MaxHookTail, secretValues(s.Env)), done: make(chan struct{}), grace: Grace}
	if s.Timeout > 0 {
		p.ctx, p.cancel = context.WithTimeoutCause(ctx, s.Timeout, ErrTimedOut)
	} else {
		p.ctx, p.cancel = context.WithCancel(ctx)
	}
	cmd := exec.Command(s.Argv[0], s.Argv[1:]...)
	cmd.Dir = s.Dir
	cmd.Stdin = stdin
	cmd.Stderr = p.tail
	cmd.Stdout = stdout
	if stdout == nil {
		cmd.Stdout = p.tail
	}
	env, err := environment(s, extra)
	if err != nil {
		p.cancel()
		return nil, err
	}
	cmd.Env = env
	if err := setProcAttr(cmd, s.User); err != nil {
		p.cancel()
		return nil, fmt.Errorf("%s: %w", s.Name, err)
	}
	p.cmd = cmd
	p.started = time.Now()
	if err := cmd.Start(); err != nil {
		p.cancel()
		return nil, fmt.Errorf("%s: cannot start %s: %w", s.Name, s.Argv[0], err)
	}
	p.group = newProcessGroup(cmd.Process)
	go func() {
		select {
		case <-p.ctx.Done():
			p.kill()
		case <-p.done:
		}
	}()
	return p, nil
}

// kill ends the whole process group: a polite signal, then after Grace a
// kill (a dump's children must not outlive a cancelled job).
func (p *Proc) kill() {
	p.killed.Do(func() {
		p.group.terminate()
		go func() {
			t := time.NewTimer(p.grace)
			defer t.Stop()
			select {
			case <-t.C:
				p.group.kill()
			case <-p.done:
			}
		}()
	})
}

// Wait waits for the command and returns its outcome. After a cancel or
// timeout, whatever is left of its process group is killed.
func (p *Proc) Wait() Outcome {
	err := p.cmd.Wait()
	o := Outcome{ExitCode: -1, Duration: time.Since(p.started)}
	if p.cmd.ProcessState != nil {
		o.ExitCode = p.cmd.ProcessState.ExitCode()
	}
	if p.ctx.Err() != nil {
		p.group.kill() // leftovers that ignored the signal
		if errors.Is(context.Cause(p.ctx), ErrTimedOut) {
			o.Err = fmt.Errorf("%w after %s", ErrTimedOut, p.spec.Timeout)
		} else {
			o.Err = ErrCancelled
		}
	} else if err != nil && o.ExitCode == -1 {
		o.Err = err
	}
	close(p.done)
	p.cancel()
	p.group.close()
	o.Tail = p.tail.String()
	return o
}

// Tail is the output kept so far.
func (p *Proc) Tail() string { return p.tail.String() }

// Pid is the command's process ID.
func (p *Proc) Pid() int { return p.cmd.Process.Pid }

// environment is a minimal environment (the platform's base variables, a
// switched user's HOME), the definition's variables and the job's.
func environment(s Spec, extra map[string]string) ([]string, error) {
	vars := map[string]string{}
	for _, k := range baseEnvKeys {
		if v, ok := os.LookupEnv(k); ok && v != "" {
			vars[k] = v
		}
	}
	if _, ok := vars["PATH"]; !ok {
		vars["PATH"] = defaultPath
	}
	if s.User != "" {
		home, err := homeOf(s.User)
		if err != nil {
			return nil, err
		}
		vars["HOME"], vars["USER"], vars["LOGNAME"] = home, s.User, s.User
	}
	for k, v := range s.Env {
		vars[k] = v
	}
	for k, v := range extra {
		vars[k] = v
	}
	keys := sortedKeys(vars)
	env := make([]string, 0, len(keys))
	for _, k := range keys {
		env = append(env, k+"="+vars[k])
	}
	return env, nil
}

// secretValues are the definition's environment values long enough to be
// a secret (PGPASSWORD, MYSQL_PWD): a hook that prints its environment
// must not send them to the console.
func secretValues(env map[string]string) []string {
	var vals []string
	for _, v := range env {
		if len(v) >= 6 {
			vals = append(vals, v)
		}
	}
	sort.Slice(vals, func(i, j int) bool { return len(vals[i]) > len(vals[j]) })
	return vals
}

// tailWriter keeps the last max bytes written.
type tailWriter struct {
	mu      sync.Mutex
	max     int
	buf     []byte
	cut     bool
	secrets []string
}

func newTailWriter(max int, secrets []string) *tailWriter {
	return &tailWriter{max: max, secrets: secrets}
}

func (w *tailWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	// Keep twice the tail, so that a secret cut at the edge is still whole
	// when String redacts.
	if over := len(w.buf) - 2*w.max; over > 0 {
		w.buf = append(w.buf[:0], w.buf[over:]...)
		w.cut = true
	}
	return len(b), nil
}

func (w *tailWriter) String() string {
	w.mu.Lock()
	s := string(w.buf)
	cut := w.cut
	w.mu.Unlock()
	for _, v := range w.secrets {
		s = strings.ReplaceAll(s, v, "[redacted]")
	}
	if len(s) > w.max-4 {
		s = "…" + s[len(s)-(w.max-4):]
		cut = false
	}
	if cut {
		s = "…" + s
	}
	return strings.ToValidUTF8(s, "")
}
