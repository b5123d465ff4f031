package runner

import (
	"os"
	"strconv"
	"strings"
	"syscall"
)

// killGroupExcept kills every process of process group pgid but keep.
// restic 0.17+ kills only the direct child of --stdin-from-command on a
// cancel; a dump's own children (sh -c, pg_dumpall's pg_dump) keep the
// pipe open, and restic then waits for them until it is killed after the
// grace period (measured: 31.8 s, exit 137, lock left behind). Killing
// them lets restic stop at once, removing its lock.
func killGroupExcept(pgid, keep int) {
	entries, err := os.ReadDir("/proc")
	if err != nil {
		return
	}
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == keep {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		// The fields after the command name, which is in parentheses and
		// may hold spaces: state, ppid, pgrp, ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 {
			continue
		}
		f := strings.Fields(s[i+1:])
		if len(f) > 2 && f[2] == strconv.Itoa(pgid) {
			_ = syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}
