package runner

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"sync/atomic"
)

// DumpArgs are the arguments of a dump: one file of a snapshot as is, or
// one folder as a tar, written to To as restic produces it.
type DumpArgs struct {
	SnapshotID string // 8–64 hex, or "latest"
	// Path is the file or folder inside the snapshot (absolute; "/" for
	// the whole snapshot).
	Path string
	// Tar asks for a folder as a tar (restic's --archive tar, which is
	// also restic's default for a folder; a file is written as is either
	// way, in 0.14 as in 0.18).
	Tar bool
	// To receives restic's standard output. A To that blocks stops restic
	// (through the pipe between them, 64 KiB on Linux): nothing is
	// buffered in between. A To that fails ends restic (SIGPIPE). To must
	// return once the run's context is done (the agent's upload does: its
	// request has that context), or the run waits for it.
	To io.Writer
}

// DumpOutput is Result.Output of a dump.
type DumpOutput struct {
	Bytes uint64 `json:"bytes"` // what restic wrote to To
}

// opDump is `restic dump [--archive tar] -- SNAPSHOT PATH`, with restic's
// standard output going to DumpArgs.To instead of the line parser. It
// reads without the agent's per-repository lock: restic's own lock is
// shared (backups and other reads run beside it), and a download a person
// waits for must not queue behind a two-hour backup of the same host.
type opDump struct{}

func (opDump) progress() bool { return false }
func (opDump) lockFree()      {}

func (opDump) argv(spec *Spec, _ resticVersion) ([]string, error) {
	a := &spec.Dump
	if err := checkSnapshotID("snapshot ID", a.SnapshotID, true); err != nil {
		return nil, err
	}
	p, err := checkTreePath("dump path", a.Path)
	if err != nil {
		return nil, err
	}
	if a.To == nil {
		return nil, errors.New("dump refused: nowhere to write it")
	}
	args := []string{"dump"}
	if a.Tar {
		args = append(args, "--archive", "tar")
	}
	return append(args, "--", a.SnapshotID, p), nil
}

func (opDump) complete(out *output, code int, res *Result) {
	if code != exitOK {
		failCode(out, code, res)
		return
	}
	res.Status = StatusSucceeded
}

func (o opDump) runAll(ctx context.Context, r *Runner, spec *Spec, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	// restic writes into a pipe of our own, not exec's: exec's copying
	// goroutine would keep a cancelled run waiting for a To that blocks.
	// On a cancel, or when To fails, restic gets SIGINT (execute) and the
	// rest of its output is read and dropped: restic 0.18 does not leave a
	// write blocked on a full pipe for SIGINT (measured: it stayed until
	// the reader moved), and once the write returns it sees the cancel at
	// its next blob, removes its lock and exits. Closing the pipe instead
	// would kill it by SIGPIPE and leave its lock behind.
	pr, pw, err := os.Pipe()
	if err != nil {
		return failed(res, "cannot make the dump's pipe: "+err.Error())
	}
	defer pr.Close()
	parent := ctx
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	cw := &countingWriter{w: spec.Dump.To}
	copied := make(chan error, 1)
	go func() {
		copied <- copyOrDrain(ctx, cw, pr, func() { cancel(errToFailed) })
	}()
	run := *spec
	run.proc = procExtras{stdout: pw}
	res = r.execute(ctx, &run, o, v, argv, h, sec, log, res)
	pw.Close() // restic has ended: the copy reads to the end
	// To returns once ctx is done (see DumpArgs.To): this wait ends.
	if cerr := <-copied; cerr != nil {
		switch {
		case parent.Err() != nil:
			// The job was cancelled (or timed out) and the writer, which
			// watches the same context, failed for it: a cancel, even
			// when restic 0.14 finished the file into the drained pipe
			// (exit 0) or the writer's stop reached ctx first (cause
			// errToFailed).
			if res.Status != StatusCancelled {
				res = interrupted(parent, res, spec.Timeout)
			}
		case res.Status == StatusSucceeded || res.Status == StatusCancelled:
			res.Status = StatusFailed
			res.Error = clip("the dump's receiver failed: " + cerr.Error())
		}
	}
	res.Output = mustJSON(DumpOutput{Bytes: cw.n.Load()})
	return res
}

// errToFailed is the cause of a dump cancelled because its writer failed.
var errToFailed = errors.New("runner: the dump's writer failed")

// copyOrDrain copies r to w until r ends. When w fails it cancels the run
// (stop) and, then or once ctx is done, reads the rest of r and drops it
// (see opDump.runAll). It returns w's error.
func copyOrDrain(ctx context.Context, w io.Writer, r io.Reader, stop func()) error {
	buf := make([]byte, 32<<10)
	var werr error
	for {
		n, err := r.Read(buf)
		if n > 0 && werr == nil && ctx.Err() == nil {
			if _, werr = w.Write(buf[:n]); werr != nil {
				stop()
			}
		}
		if err != nil {
			return werr
		}
	}
}

// countingWriter counts what passes through it.
type countingWriter struct {
	w io.Writer
	n atomic.Uint64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n.Add(uint64(n))
	return n, err
}
