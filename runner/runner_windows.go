//go:build windows

package runner

import (
	"os"
	"os/exec"
	"syscall"

	"golang.org/x/sys/windows"
)

// baseEnvKeys are the agent's environment variables restic inherits
// (restic's cache lives under %LOCALAPPDATA%).
var baseEnvKeys = []string{"PATH", "SystemRoot", "SystemDrive", "USERPROFILE", "LOCALAPPDATA", "APPDATA", "TEMP", "TMP", "TZ"}

// setProcAttr starts restic in a new process group, so that console
// Ctrl-C events of the agent do not reach it, and so that CTRL_BREAK can be
// sent to restic alone.
func setProcAttr(cmd *exec.Cmd) {
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
}

// interrupt asks restic to stop: CTRL_BREAK to its own process group, which
// restic handles like SIGINT (it removes its lock). A service has no
// console to send the event through; then restic is killed, and its lock
// is left for unlock (it is stale once the process is gone).
func interrupt(p *os.Process) error {
	if err := windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(p.Pid)); err == nil {
		return nil
	}
	return p.Kill()
}

// exitCode is restic's exit code.
func exitCode(ps *os.ProcessState) int {
	return ps.ExitCode()
}

// checkPrivateDir: TODO with the Windows issue: check the directory's ACL
// (owner and SYSTEM only). Mode bits mean nothing there.
func checkPrivateDir(string, os.FileInfo) error {
	return nil
}

// processExists tells whether a process with this ID exists on this host
// (restic's own test for a stale lock).
func processExists(pid int) bool {
	if pid <= 0 {
		return false
	}
	p, err := os.FindProcess(pid)
	if err != nil {
		return false
	}
	_ = p.Release()
	return true
}

// killGroup: on Windows restic kills its command itself; a dump's own
// children are left to it (process groups do not outlive their leader).
func killGroup(int) {}
