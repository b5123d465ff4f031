package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"strings"
	"sync"
	"time"
)

// LockInfo is one lock in a repository.
type LockInfo struct {
	ID        string    `json:"id"` // 64 hex
	Time      time.Time `json:"time"`
	Exclusive bool      `json:"exclusive"`
	Hostname  string    `json:"hostname"`
	Username  string    `json:"username"`
	PID       int       `json:"pid"`
	UID       uint32    `json:"uid"`
	GID       uint32    `json:"gid"`
	// Stale: older than StaleLockAge, or taken on this host (same host
	// name) by a process that no longer exists; restic's `unlock` removes
	// such locks. A lock of another host is stale by age only.
	Stale bool `json:"stale"`
	// Error, if set, tells why the lock could not be read (its other
	// fields but ID are then empty).
	Error string `json:"error,omitempty"`
}

// StaleLockAge is the age from which restic considers a lock stale (it
// refreshes its locks every 5 minutes).
const StaleLockAge = 30 * time.Minute

// maxLocksRead is how many locks the probe reads; beyond it locks are
// listed with their ID only. Each read is a restic run (~0.5 s of key
// derivation), maxLocksParallel at a time.
const (
	maxLocksRead     = 100
	maxLocksParallel = 4
	lockReadTimeout  = 20 * time.Second
)

// ListLocks lists the repository's locks (KindLocks). It reads without
// locking, and does not wait for Runner.Locks: it can look at a repository
// while a run on it hangs. (The method cannot be called Locks: that is the
// Runner's field.)
func (r *Runner) ListLocks(ctx context.Context, repo Repo) ([]LockInfo, error) {
	res := r.Run(ctx, Spec{Kind: KindLocks, Repo: repo}, Hooks{})
	if res.Status != StatusSucceeded {
		return nil, &RunError{Result: res}
	}
	var locks []LockInfo
	if err := json.Unmarshal(res.Output, &locks); err != nil {
		return nil, fmt.Errorf("runner: locks output: %w", err)
	}
	return locks, nil
}

// opLocks is `restic list locks --no-lock`, then `restic cat lock ID
// --no-lock` for each lock (the same in 0.14–0.18: IDs one per line, the
// lock as indented JSON {time, exclusive, hostname, username, pid, uid,
// gid}). Output is []LockInfo.
type opLocks struct{}

func (opLocks) lockFree()      {}
func (opLocks) progress() bool { return false }

func (opLocks) argv(*Spec, resticVersion) ([]string, error) {
	return []string{"list", "locks", "--no-lock"}, nil
}

// complete is not used: runAll runs restic itself.
func (opLocks) complete(out *output, code int, res *Result) {
	opCapture{}.complete(out, code, res)
}

func (opLocks) runAll(ctx context.Context, r *Runner, spec *Spec, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	list := &captureParser{}
	res = r.execute(ctx, spec, opCapture{list}, v, argv, h, sec, log, res)
	if res.Status != StatusSucceeded {
		return res
	}
	var ids []string
	for _, l := range strings.Split(list.text(), "\n") {
		if l = strings.TrimSpace(l); isFullID(l) {
			ids = append(ids, l)
		}
	}
	locks := make([]LockInfo, len(ids))
	keep := make([]bool, len(ids))
	host, _ := os.Hostname()
	now := time.Now()

	var wg sync.WaitGroup
	sem := make(chan struct{}, maxLocksParallel)
	for i, id := range ids {
		locks[i].ID, keep[i] = id, true
		if i >= maxLocksRead {
			locks[i].Error = fmt.Sprintf("not read: more than %d locks", maxLocksRead)
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			select {
			case sem <- struct{}{}:
			case <-ctx.Done():
				return
			}
			defer func() { <-sem }()
			cat := &captureParser{}
			// restic 0.14 retries reading a missing file for about a
			// minute: a lock removed since the listing must not hold the
			// probe that long.
			cctx, cancel := context.WithTimeout(ctx, lockReadTimeout)
			defer cancel()
			cres := r.execute(cctx, spec, opCapture{cat}, v, []string{"cat", "lock", id, "--no-lock"}, Hooks{}, sec, log, Result{ExitCode: -1})
			switch {
			case ctx.Err() != nil:
			case cctx.Err() != nil:
				locks[i].Error = fmt.Sprintf("not read within %v (removed meanwhile?)", lockReadTimeout)
			case cres.Status == StatusSucceeded:
				if err := json.Unmarshal([]byte(cat.text()), &locks[i]); err != nil {
					locks[i].Error = "cannot read the lock: " + err.Error()
				}
				locks[i].ID = id
				locks[i].Stale = lockStale(locks[i], host, now)
			case lockGone(cres):
				keep[i] = false // removed since it was listed
			default:
				locks[i].Error = clip(cres.Error)
			}
		}()
	}
	wg.Wait()
	res.EndedAt = time.Now()
	if ctx.Err() != nil {
		return interrupted(ctx, res, spec.Timeout)
	}
	out := make([]LockInfo, 0, len(ids))
	for i := range locks {
		if keep[i] {
			out = append(out, locks[i])
		}
	}
	succeed(&res, out)
	return res
}

// lockStale tells whether restic would consider l stale.
func lockStale(l LockInfo, host string, now time.Time) bool {
	if l.Error != "" {
		return false
	}
	if now.Sub(l.Time) > StaleLockAge {
		return true
	}
	return host != "" && l.Hostname == host && !processExists(l.PID)
}

// lockGone tells whether `cat lock` failed because the lock is gone.
func lockGone(res Result) bool {
	if res.ExitCode <= 0 {
		return false
	}
	s := res.Error + "\n" + res.StderrTail
	return strings.Contains(s, "no such file or directory") || strings.Contains(s, "does not exist") || strings.Contains(s, "not found")
}

// opCapture runs restic for its plain stdout (list, cat): the lines go to
// the parser, which keeps up to captureMax bytes.
type opCapture struct{ p *captureParser }

const captureMax = 1 << 20

func (opCapture) progress() bool                              { return false }
func (opCapture) argv(*Spec, resticVersion) ([]string, error) { return nil, nil }
func (o opCapture) newParser(*Spec) parser {
	if o.p == nil {
		return &captureParser{}
	}
	return o.p
}

func (opCapture) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	res.Status = StatusSucceeded
}

type captureParser struct {
	noParser
	mu  sync.Mutex
	buf bytes.Buffer
}

func (p *captureParser) stdout(line []byte, _ lineKind, _ string) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.buf.Len()+len(line) < captureMax {
		p.buf.Write(line)
		p.buf.WriteByte('\n')
	}
	return true
}

func (p *captureParser) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}
