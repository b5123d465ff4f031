//go:build unix

package agentcmd

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestRunOutputExitAndEnv(t *testing.T) {
	s := Spec{Name: "t", Argv: []string{"sh", "-c", `echo "status=$RM_JOB_STATUS secret=$PGPASSWORD"; echo oops >&2; exit 3`},
		Env: map[string]string{"PGPASSWORD": "hunter22"}, Timeout: time.Minute}
	o := Run(context.Background(), s, map[string]string{"RM_JOB_STATUS": "failed"})
	if o.OK() || o.ExitCode != 3 || o.Err != nil {
		t.Fatalf("outcome %+v, want exit code 3", o)
	}
	if !strings.Contains(o.Tail, "status=failed") || !strings.Contains(o.Tail, "oops") {
		t.Fatalf("tail %q lacks the output", o.Tail)
	}
	if strings.Contains(o.Tail, "hunter22") || !strings.Contains(o.Tail, "secret=[redacted]") {
		t.Fatalf("tail %q shows the definition's secret", o.Tail)
	}
	if o.Error() != "exit code 3" {
		t.Fatalf("Error() = %q", o.Error())
	}
}

func TestRunEnvironmentIsMinimal(t *testing.T) {
	t.Setenv("RM_TEST_LEAK", "agent-only")
	o := Run(context.Background(), Spec{Name: "t", Argv: []string{"env"}}, nil)
	if !o.OK() {
		t.Fatal(o.Error())
	}
	if strings.Contains(o.Tail, "RM_TEST_LEAK") || !strings.Contains(o.Tail, "PATH=") {
		t.Fatalf("environment %q: want PATH and none of the agent's other variables", o.Tail)
	}
}

func TestTailKeepsTheEnd(t *testing.T) {
	o := Run(context.Background(), Spec{Name: "t", Argv: []string{"sh", "-c", `i=0; while [ $i -lt 3000 ]; do echo line $i; i=$((i+1)); done`}}, nil)
	if len(o.Tail) > 4096 || !strings.HasSuffix(o.Tail, "line 2999\n") || !strings.HasPrefix(o.Tail, "…") {
		t.Fatalf("tail of %d bytes: %q…%q", len(o.Tail), o.Tail[:20], o.Tail[len(o.Tail)-20:])
	}
}

// A cancelled command's whole process group dies: the dump and whatever
// it started.
func TestCancelKillsTheProcessGroup(t *testing.T) {
	dir := t.TempDir()
	pidFile := filepath.Join(dir, "child")
	ctx, cancel := context.WithCancel(context.Background())
	// The child ignores SIGTERM: only the group kill after Grace ends it.
	old := Grace
	Grace = 500 * time.Millisecond
	defer func() { Grace = old }()
	p, err := Start(ctx, Spec{Name: "dump", Argv: []string{"sh", "-c", `sh -c 'trap "" TERM; sleep 60' & echo $! > ` + pidFile + `; wait`}}, nil, nil, nil)
	if err != nil {
		t.Fatal(err)
	}
	var child int
	for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		b, _ := os.ReadFile(pidFile)
		if n, err := strconv.Atoi(strings.TrimSpace(string(b))); err == nil {
			child = n
			break
		}
	}
	if child == 0 {
		t.Fatal("the command did not start its child")
	}
	cancel()
	o := p.Wait()
	if !errors.Is(o.Err, ErrCancelled) {
		t.Fatalf("outcome %+v, want cancelled", o)
	}
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if err := syscall.Kill(child, 0); errors.Is(err, syscall.ESRCH) {
			break
		}
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); strings.Contains(string(b), ") Z ") {
			break // a zombie waiting for init: dead
		}
		if time.Now().After(deadline) {
			t.Fatalf("child %d outlived the cancelled command", child)
		}
	}
}

func TestTimeout(t *testing.T) {
	o := Run(context.Background(), Spec{Name: "slow", Argv: []string{"sleep", "30"}, Timeout: 200 * time.Millisecond}, nil)
	if !errors.Is(o.Err, ErrTimedOut) || !strings.Contains(o.Error(), "timed out after 200ms") {
		t.Fatalf("outcome %+v, want a timeout", o)
	}
}

func TestStdinAndStdout(t *testing.T) {
	var out strings.Builder
	p, err := Start(context.Background(), Spec{Name: "cat", Argv: []string{"cat"}}, nil, strings.NewReader("dump data"), &out)
	if err != nil {
		t.Fatal(err)
	}
	if o := p.Wait(); !o.OK() || out.String() != "dump data" || o.Tail != "" {
		t.Fatalf("outcome %+v, stdout %q", o, out.String())
	}
}

func TestRunAsUser(t *testing.T) {
	if os.Geteuid() != 0 {
		// Not a skip of the feature: as non-root the agent refuses, which
		// is what this checks here.
		if _, err := NewSet(nil, map[string]Source{"x": {Command: []string{"true"}, User: "nobody"}}); err == nil || !strings.Contains(err.Error(), "only root") {
			t.Fatalf("a non-root agent accepted user: nobody (%v)", err)
		}
		return
	}
	o := Run(context.Background(), Spec{Name: "id", Argv: []string{"id", "-un"}, User: "nobody", Dir: "/"}, nil)
	if !o.OK() || strings.TrimSpace(o.Tail) != "nobody" {
		t.Fatalf("outcome %+v, want it run as nobody", o)
	}
}

func TestNewSetValidates(t *testing.T) {
	good := map[string]Hook{"pg-freeze": {Before: []string{"true"}, After: []string{"true"}, Timeout: Duration(time.Minute)}}
	src := map[string]Source{"pg": {Command: []string{"true"}, Filename: "pg.sql", Restore: []string{"cat"}}, "etc": {Command: []string{"true"}}}
	set, err := NewSet(good, src)
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(set.HookNames(), ","); got != "pg-freeze" {
		t.Fatalf("hook names %q", got)
	}
	if got := strings.Join(set.SourceNames(), ",") + "|" + strings.Join(set.RestoreNames(), ","); got != "etc,pg|pg" {
		t.Fatalf("source names %q", got)
	}
	if _, err := set.Hook("nope"); err == nil || !strings.Contains(err.Error(), `hook "nope" is not defined in this agent's configuration (it has: pg-freeze)`) {
		t.Fatalf("unknown hook: %v", err)
	}
	for _, tc := range []struct {
		hooks   map[string]Hook
		sources map[string]Source
		want    string
	}{
		{map[string]Hook{"Bad Name": {Before: []string{"true"}}}, nil, `hook name "Bad Name"`},
		{map[string]Hook{"empty": {}}, nil, "needs at least one of before, after, on_failure"},
		{map[string]Hook{"x": {Before: []string{"/no/such/program"}}}, nil, `program "/no/such/program"`},
		{map[string]Hook{"x": {Before: []string{"true"}, Dir: "relative"}}, nil, "must be an absolute path"},
		{map[string]Hook{"x": {Before: []string{"true"}, User: "no-such-user-here"}}, nil, `user "no-such-user-here"`},
		{nil, map[string]Source{"pg": {}}, `source "pg": command is required`},
		{nil, map[string]Source{"pg": {Command: []string{"true"}, Filename: "a/b"}}, "filename"},
		{nil, map[string]Source{"pg": {Command: []string{"true"}, Restore: []string{"/nope"}}}, `source "pg" restore`},
	} {
		if _, err := NewSet(tc.hooks, tc.sources); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("NewSet(%v, %v) = %v, want %q", tc.hooks, tc.sources, err, tc.want)
		}
	}
}
