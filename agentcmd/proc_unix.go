//go:build unix

package agentcmd

import (
	"fmt"
	"os"
	"os/exec"
	"os/user"
	"strconv"
	"syscall"
)

var baseEnvKeys = []string{"PATH", "HOME", "LANG", "LC_ALL", "TZ", "TMPDIR"}

const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// setProcAttr puts the command in a process group of its own (so that
// cancel can kill everything it started) and, when name is set, runs it
// as that user.
func setProcAttr(cmd *exec.Cmd, name string) error {
	attr := &syscall.SysProcAttr{Setpgid: true}
	if name != "" {
		cred, err := credentialOf(name)
		if err != nil {
			return err
		}
		attr.Credential = cred
	}
	cmd.SysProcAttr = attr
	return nil
}

// credentialOf looks a user up; only root may run commands as another.
func credentialOf(name string) (*syscall.Credential, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return nil, fmt.Errorf("user %q: %w", name, err)
	}
	uid, err1 := strconv.ParseUint(u.Uid, 10, 32)
	gid, err2 := strconv.ParseUint(u.Gid, 10, 32)
	if err1 != nil || err2 != nil {
		return nil, fmt.Errorf("user %q: uid %q or gid %q is not a number", name, u.Uid, u.Gid)
	}
	if me := os.Geteuid(); me != 0 && uint64(me) != uid {
		return nil, fmt.Errorf("user %q: the agent runs as uid %d and only root can run a command as another user", name, me)
	}
	cred := &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
	if gids, err := u.GroupIds(); err == nil {
		for _, g := range gids {
			if n, err := strconv.ParseUint(g, 10, 32); err == nil {
				cred.Groups = append(cred.Groups, uint32(n))
			}
		}
	}
	return cred, nil
}

func homeOf(name string) (string, error) {
	u, err := user.Lookup(name)
	if err != nil {
		return "", fmt.Errorf("user %q: %w", name, err)
	}
	return u.HomeDir, nil
}

// processGroup is the command's process group: its leader's PID.
type processGroup struct{ pgid int }

func newProcessGroup(p *os.Process) processGroup { return processGroup{pgid: p.Pid} }

func (g processGroup) terminate() { _ = syscall.Kill(-g.pgid, syscall.SIGTERM) }
func (g processGroup) kill()      { _ = syscall.Kill(-g.pgid, syscall.SIGKILL) }
func (g processGroup) close()     {}
