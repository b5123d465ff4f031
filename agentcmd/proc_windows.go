//go:build windows

package agentcmd

import (
	"errors"
	"os"
	"os/exec"
	"syscall"
	"unsafe"

	"golang.org/x/sys/windows"
)

var baseEnvKeys = []string{"PATH", "SystemRoot", "SystemDrive", "USERPROFILE", "LOCALAPPDATA", "APPDATA", "TEMP", "TMP", "TZ", "PATHEXT", "ComSpec"}

const defaultPath = `C:\Windows\system32;C:\Windows`

// setProcAttr starts the command in a new process group; running as
// another user is Linux-only.
func setProcAttr(cmd *exec.Cmd, name string) error {
	if name != "" {
		return errors.New("user: running a command as another user is only supported on Linux")
	}
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: syscall.CREATE_NEW_PROCESS_GROUP}
	return nil
}

func credentialOf(name string) (struct{}, error) {
	return struct{}{}, errors.New("user: running a command as another user is only supported on Linux")
}

func homeOf(string) (string, error) {
	return "", errors.New("user: only supported on Linux")
}

// processGroup is a job object holding the command and everything it
// starts: terminating the job ends the whole tree (the Windows answer to
// a process group kill).
type processGroup struct {
	job  windows.Handle
	proc *os.Process
}

func newProcessGroup(p *os.Process) processGroup {
	g := processGroup{proc: p}
	job, err := windows.CreateJobObject(nil, nil)
	if err != nil {
		return g
	}
	info := windows.JOBOBJECT_EXTENDED_LIMIT_INFORMATION{}
	info.BasicLimitInformation.LimitFlags = windows.JOB_OBJECT_LIMIT_KILL_ON_JOB_CLOSE
	if _, err := windows.SetInformationJobObject(job, windows.JobObjectExtendedLimitInformation,
		uintptr(unsafe.Pointer(&info)), uint32(unsafe.Sizeof(info))); err != nil {
		windows.CloseHandle(job)
		return g
	}
	h, err := windows.OpenProcess(windows.PROCESS_SET_QUOTA|windows.PROCESS_TERMINATE, false, uint32(p.Pid))
	if err != nil {
		windows.CloseHandle(job)
		return g
	}
	defer windows.CloseHandle(h)
	if err := windows.AssignProcessToJobObject(job, h); err != nil {
		windows.CloseHandle(job)
		return g
	}
	g.job = job
	return g
}

// terminate sends CTRL_BREAK to the group (restic and most tools stop
// cleanly on it); kill ends the job object's whole tree.
func (g processGroup) terminate() {
	if err := windows.GenerateConsoleCtrlEvent(windows.CTRL_BREAK_EVENT, uint32(g.proc.Pid)); err != nil {
		g.kill()
	}
}

func (g processGroup) kill() {
	if g.job != 0 {
		_ = windows.TerminateJobObject(g.job, 1)
		return
	}
	_ = g.proc.Kill()
}

func (g processGroup) close() {
	if g.job != 0 {
		_ = windows.CloseHandle(g.job)
	}
}
