//go:build windows

package runner

import (
	"os"
	"os/exec"
	"syscall"
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

// interrupt stops restic. For now it kills it, which leaves a stale lock in
// the repository; sending CTRL_BREAK to restic's process group (which
// restic treats like SIGINT) comes with the Windows issue.
func interrupt(p *os.Process) error {
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
