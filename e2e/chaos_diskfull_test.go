package e2e

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// TestChaosDiskFull: the agent's state directory fills up (fault 7).
func TestChaosDiskFull(t *testing.T) {
	needRoot(t)
	t.Parallel()
	f := newChaosFleet(t, 1)
	f.faultDiskFull(chaosSize())
}

// 7. The agent's state directory is a small tmpfs. A backup is running when
// it fills up; more commands arrive while it is full; then space is freed.
// Every job must end in a state that matches the repository, without
// restarting the agent, and the agent must run the next job.
func (f *chaosFleet) faultDiskFull(sz chaosScale) {
	t := f.t
	ft := f.fault(7, "agent state dir on a full filesystem (tmpfs), then space freed")
	defer ft.finish()
	a := f.agents[0]
	stop(t, a.ap.Proc)
	f.srv.waitOnline(a.host.ID, false)
	dir := tmpfsState(t, a, 4<<20)
	a.start()
	f.srv.waitOnline(a.host.ID, true)
	base := ft.backup(a, "succeeded")
	f.srv.waitJob(base, 2*time.Minute)

	for rep := range sz.reps {
		f.gate.close()
		running := ft.backup(a)
		f.waitRunning(running)
		filler := fill(t, dir)
		for range sz.jobs {
			ft.backup(a)
		}
		f.gate.open()
		// Let the running backup end and the new commands arrive while full.
		time.Sleep(3 * time.Second)
		states := map[string]int{}
		for _, tr := range ft.jobs {
			states[f.srv.job(tr.ID).Status]++
		}
		ft.note("repetition %d, with the disk full: %s", rep+1, summarise(states))
		if err := os.Remove(filler); err != nil {
			t.Fatal(err)
		}
		if free := freeBytes(dir); free < 1<<20 {
			t.Fatalf("only %d bytes free after removing the filler", free)
		}
		ft.drain(time.Minute)
	}
	procs := len(a.procs)
	after := ft.backup(a, "succeeded")
	if j := f.waitEnd(after, time.Minute); j.Status != "succeeded" {
		ft.violation("the first backup after space was freed: %s %q", j.Status, j.Error)
	}
	ft.check(time.Minute)
	if len(a.procs) != procs || !a.running() {
		ft.violation("the agent was restarted or died")
	}
}

// needRoot fails (never skips) when the suite cannot mount a tmpfs.
func needRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Fatal("the chaos suite needs root: it mounts a small tmpfs as an agent's state directory (run the tests as root, as CI does)")
	}
}

// ---- a small filesystem for an agent's state ----

// tmpfsState moves the agent's (stopped) state directory onto a tmpfs of
// size bytes, unmounted at cleanup.
func tmpfsState(t *testing.T, a *chaosAgent, size int) string {
	t.Helper()
	needRoot(t)
	dir := a.stateDir()
	saved := t.TempDir()
	if out, err := exec.Command("cp", "-a", dir+"/.", saved).CombinedOutput(); err != nil {
		t.Fatalf("save state: %v %s", err, out)
	}
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", fmt.Sprintf("size=%d,mode=0700", size), "tmpfs", dir).CombinedOutput(); err != nil {
		t.Fatalf("the chaos suite needs to mount a tmpfs (as root): mount: %v %s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v %s", dir, err, out)
		}
	})
	// Only what the agent cannot rebuild: its key, journal, outbox and fire
	// log (the restic cache starts empty).
	for _, name := range []string{"agent.key", "jobs", "outbox", "fires.json"} {
		src := filepath.Join(saved, name)
		if _, err := os.Stat(src); err != nil {
			continue
		}
		if out, err := exec.Command("cp", "-a", src, dir+"/").CombinedOutput(); err != nil {
			t.Fatalf("restore state: %v %s", err, out)
		}
	}
	return dir
}

// fill writes into dir until the filesystem is full and returns the file.
func fill(t *testing.T, dir string) string {
	t.Helper()
	p := filepath.Join(dir, "filler")
	fh, err := os.OpenFile(p, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer fh.Close()
	// Pages first, then the last bytes of a page.
	for _, size := range []int{64 << 10, 4096, 1} {
		buf := make([]byte, size)
		for {
			_, err := fh.Write(buf)
			if err == nil {
				continue
			}
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill: %v", err)
			}
			break
		}
	}
	return p
}

func freeBytes(dir string) int64 {
	var st syscall.Statfs_t
	if err := syscall.Statfs(dir, &st); err != nil {
		return -1
	}
	return int64(st.Bavail) * st.Bsize
}
