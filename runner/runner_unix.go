//go:build unix

package runner

import (
	"fmt"
	"os"
	"os/exec"
	"syscall"
)

// baseEnvKeys are the agent's environment variables restic inherits.
var baseEnvKeys = []string{"PATH", "HOME", "TMPDIR", "TZ", "XDG_CACHE_HOME"}

// setProcAttr starts restic in its own process group, so that a Ctrl-C on
// the agent's terminal does not reach it: the runner decides when to cancel.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

// interrupt asks restic to stop: SIGINT makes it clean up and remove its
// lock (a second SIGINT is ignored; the runner kills after Grace).
func interrupt(p *os.Process) error {
	return p.Signal(os.Interrupt)
}

// exitCode is restic's exit code, or 128+signal when a signal ended it.
func exitCode(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// checkPrivateDir refuses a directory for secret files that others could
// read or write.
func checkPrivateDir(path string, fi os.FileInfo) error {
	if perm := fi.Mode().Perm(); perm&0o077 != 0 {
		return fmt.Errorf("temp dir %s has mode %#o: it must not be accessible to group or others (0700)", path, perm)
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok && int(st.Uid) != os.Geteuid() {
		return fmt.Errorf("temp dir %s is owned by uid %d, not by this process (uid %d)", path, st.Uid, os.Geteuid())
	}
	return nil
}

// processExists tells whether a process with this ID exists on this host
// (restic's own test for a stale lock).
func processExists(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || err == syscall.EPERM
}

// killGroup kills what is left of restic's process group (restic leads
// it): the children of a source's dump command that restic started.
func killGroup(pgid int) { _ = syscall.Kill(-pgid, syscall.SIGKILL) }
