package agent

import (
	"container/heap"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/agentcmd"
	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// A restore drill (ARCHITECTURE.md, "Restore drills"): restore a sample
// of a host's latest snapshot, and every source dump, into a scratch
// directory, verify it, run the probe hook against it, measure the rate,
// remove the scratch data, report.

// drillDir is the scratch area under the state directory (cleared at
// start: a drill cut short by a crash leaves nothing for long).
const drillDir = "drill"

// drillRoomFactor is the free space a drill needs over the sample's
// size: restic writes each file whole before verifying it, plus its cache.
const drillRoomFactor = 1.1

// sampleFile is a file of the snapshot the sample may hold.
type sampleFile struct {
	path  string
	size  int64
	mtime time.Time
}

func (a *Agent) runDrill(ctx context.Context, cmd wire.Command, spec runner.Spec, pump *progressPump) runner.Result {
	start := time.Now()
	pump.started(start)
	res := runner.Result{StartedAt: start, ExitCode: -1}
	fail := func(out *wire.DrillOutput, msg string) runner.Result {
		res.Status, res.Error, res.EndedAt = runner.StatusFailed, msg, time.Now()
		if ctx.Err() != nil {
			res.Status, res.Error = runner.StatusCancelled, "cancelled"
		}
		if out != nil {
			res.Output, _ = json.Marshal(out)
		}
		return res
	}
	decoded, err := wire.DecodeArgs(wire.JobDrill, cmd.Args)
	if err != nil {
		return fail(nil, err.Error())
	}
	args := decoded.(*wire.DrillArgs)
	var probe *agentcmd.Spec
	if args.Probe != "" {
		h, err := a.commands().Hook(args.Probe)
		if err != nil {
			return fail(nil, "probe: "+err.Error())
		}
		s := h.Phase(args.Probe, wire.HookAfter)
		if len(s.Argv) == 0 {
			s = h.Phase(args.Probe, wire.HookBefore)
		}
		probe = &s
	}
	out := &wire.DrillOutput{}
	if args.HostID != "" && args.HostID != a.cfg.HostID {
		out.TargetHostID = a.cfg.HostID
	}

	// 1. The snapshots: the one asked for, or the host's latest of its
	// paths and of each source.
	main, sources, err := a.drillSnapshots(ctx, spec, args)
	if err != nil {
		return fail(out, err.Error())
	}
	out.SnapshotID = main
	for _, s := range sources {
		out.SourceSnapshots = append(out.SourceSnapshots, s.id)
	}

	// 2. The sample, chosen while restic lists the snapshot.
	rng := rand.New(rand.NewPCG(uint64(start.UnixNano()), uint64(len(cmd.JobID))))
	picker := newSampler(args.Files(), args.Bytes(), rng)
	var files int
	var total int64
	listed := map[string]sampleFile{}
	wanted := map[string]bool{}
	for _, p := range args.Paths {
		wanted[p] = true
	}
	if main != "" {
		err = a.runner.LsStream(ctx, spec.Repo, main, func(n runner.Node) error {
			if n.Type != "file" {
				return nil
			}
			f := sampleFile{path: n.Path, size: int64(n.Size), mtime: n.Mtime}
			files++
			total += f.size
			if wanted[n.Path] {
				listed[n.Path] = f
				return nil
			}
			picker.offer(f)
			return nil
		})
		if err != nil {
			return fail(out, "listing the snapshot: "+err.Error())
		}
	}
	sample := picker.result()
	for _, p := range args.Paths {
		if f, ok := listed[p]; ok {
			sample = append(sample, f)
		} else {
			out.Mismatches = append(out.Mismatches, wire.DrillMismatch{Path: p, Reason: "not a file in the snapshot"})
		}
	}
	sort.Slice(sample, func(i, j int) bool { return sample[i].path < sample[j].path })
	var srcFiles []sampleFile
	for i := range sources {
		if err := a.runner.LsStream(ctx, spec.Repo, sources[i].id, func(n runner.Node) error {
			if n.Type == "file" {
				sources[i].file = sampleFile{path: n.Path, size: int64(n.Size), mtime: n.Mtime}
			}
			return nil
		}); err != nil {
			return fail(out, fmt.Sprintf("listing source snapshot %s: %v", short(sources[i].id), err))
		}
		srcFiles = append(srcFiles, sources[i].file)
		files++
		total += sources[i].file.size
	}
	out.SnapshotFiles, out.SnapshotBytes = files, total
	var need int64
	for _, f := range append(slices.Clone(sample), srcFiles...) {
		need += f.size
		if len(out.Sample) < wire.MaxDrillReported {
			out.Sample = append(out.Sample, f.path)
		}
	}

	// 3. Room for it, in a fresh scratch directory removed whatever happens.
	base := filepath.Join(a.cfg.StateDir, drillDir)
	if err := os.MkdirAll(base, 0o700); err != nil {
		return fail(out, "scratch directory: "+err.Error())
	}
	if err := checkRoom(base, need, len(sample)+len(srcFiles)); err != nil {
		return fail(out, err.Error())
	}
	scratch, err := os.MkdirTemp(base, "job-")
	if err != nil {
		return fail(out, "scratch directory: "+err.Error())
	}
	defer func() {
		if err := os.RemoveAll(scratch); err != nil {
			a.log.Error("drill: scratch data left behind", "dir", scratch, "error", err)
		}
	}()

	// 4. Restore, with restic's own verification, timing the restores.
	var restoreTime time.Duration
	var restoreErrs []string
	restore := func(snap, target string, include []string) {
		r := a.runner.Run(ctx, runner.Spec{Kind: runner.KindRestore, Repo: spec.Repo, Timeout: spec.Timeout,
			Restore: runner.RestoreArgs{SnapshotID: snap, Include: include, Target: target, Verify: true}}, runner.Hooks{})
		// restic's own restore time (0.16+: from the summary) leaves out
		// its start-up — opening the repository, loading the index —,
		// which a full restore pays once but a small sample pays whole:
		// with the wall time a 42 MiB sample of a 1 GiB snapshot put the
		// full restore at 2.4 times what it took (BenchmarkDrill).
		var ro runner.RestoreOutput
		if json.Unmarshal(r.Output, &ro) == nil && ro.SecondsElapsed != nil && *ro.SecondsElapsed > 0 {
			restoreTime += time.Duration(*ro.SecondsElapsed * float64(time.Second))
		} else if !r.StartedAt.IsZero() {
			restoreTime += r.EndedAt.Sub(r.StartedAt)
		}
		if r.Status != runner.StatusSucceeded {
			restoreErrs = append(restoreErrs, fmt.Sprintf("restic restore of %s: %s", short(snap), r.Error))
		}
		pump.send(wire.Progress{FilesDone: uint64(len(out.Sample))})
	}
	filesDir := filepath.Join(scratch, "files")
	if len(sample) > 0 {
		include := make([]string, len(sample))
		for i, f := range sample {
			include[i] = escapePattern(f.path)
		}
		restore(main, filesDir, include)
	}
	for _, s := range sources {
		restore(s.id, filepath.Join(scratch, "sources", s.name), nil)
	}
	if ctx.Err() != nil {
		return fail(out, "cancelled")
	}

	// 5. Verify: each file whole and of its size; and where the live file
	// is unchanged since the snapshot (same size and mtime, on the host
	// that was backed up), the same bytes.
	live := out.TargetHostID == ""
	for _, f := range sample {
		n, m := a.verifyDrillFile(filepath.Join(filesDir, localTreePath(f.path)), f, live)
		out.FilesChecked++
		out.BytesChecked += n
		if m != "" {
			out.Mismatches = append(out.Mismatches, wire.DrillMismatch{Path: f.path, Reason: m})
		} else if live && m == "" && liveUnchanged(f) {
			out.LiveCompared++
		}
	}
	for _, s := range sources {
		n, m := a.verifyDrillFile(filepath.Join(scratch, "sources", s.name, localTreePath(s.file.path)), s.file, false)
		out.FilesChecked++
		out.BytesChecked += n
		if m != "" {
			out.Mismatches = append(out.Mismatches, wire.DrillMismatch{Path: "source " + s.name + ": " + s.file.path, Reason: m})
		}
	}
	if len(out.Mismatches) > wire.MaxDrillReported {
		out.Mismatches = out.Mismatches[:wire.MaxDrillReported]
	}
	if secs := restoreTime.Seconds(); secs > 0 && out.BytesChecked > 0 {
		out.RestoreSeconds = secs
		out.RestoreBytesPerS = float64(out.BytesChecked) / secs
		out.EstimatedFullRestoreS = float64(out.SnapshotBytes) / out.RestoreBytesPerS
	}

	// 6. The probe, against what came back.
	if probe != nil {
		env := map[string]string{"RM_DRILL_DIR": scratch, "RM_DRILL_FILES_DIR": filesDir, "RM_DRILL_SOURCES_DIR": filepath.Join(scratch, "sources"),
			"RM_SNAPSHOT_ID": main, "RM_JOB_ID": cmd.JobID, "RM_JOB_KIND": wire.JobDrill, "RM_HOST_ID": a.cfg.HostID, "RM_HOOK_PHASE": "probe"}
		o := agentcmd.Run(ctx, *probe, env)
		out.Probe = &wire.DrillProbe{Name: args.Probe, OK: o.OK(), ExitCode: o.ExitCode, Output: o.Tail}
		if o.Err != nil && out.Probe.Output == "" {
			out.Probe.Output = o.Err.Error()
		}
	}

	res.Output, _ = json.Marshal(out)
	res.EndedAt = time.Now()
	var problems []string
	problems = append(problems, restoreErrs...)
	if n := len(out.Mismatches); n > 0 {
		var paths []string
		for _, m := range out.Mismatches[:min(n, 5)] {
			paths = append(paths, m.Path+" ("+m.Reason+")")
		}
		problems = append(problems, fmt.Sprintf("%d of %d files did not come back as backed up: %s", n, out.FilesChecked, strings.Join(paths, "; ")))
	}
	if out.Probe != nil && !out.Probe.OK {
		problems = append(problems, fmt.Sprintf("probe %s failed (exit code %d): %s", args.Probe, out.Probe.ExitCode, lastLine(out.Probe.Output)))
	}
	if ctx.Err() != nil {
		res.Status, res.Error = runner.StatusCancelled, "cancelled"
		return res
	}
	if len(problems) > 0 {
		res.Status, res.Error = runner.StatusFailed, clipText(strings.Join(problems, "; "), 2000)
		return res
	}
	res.Status, res.ExitCode = runner.StatusSucceeded, 0
	return res
}

// checkRoom refuses a sample that would not fit the scratch filesystem,
// with both figures.
func checkRoom(dir string, need int64, files int) error {
	free, err := freeBytes(dir)
	if err != nil || float64(need)*drillRoomFactor <= float64(free) {
		return nil // unknown free space: restic's own error will tell
	}
	return fmt.Errorf("not enough room for the drill's sample in %s: it needs %s (%d files, +10%%), %s are free; lower sample_bytes or free space",
		dir, humanBytes(int64(float64(need)*drillRoomFactor)), files, humanBytes(free))
}

// drillSource is a source dump's snapshot.
type drillSource struct {
	name, id string
	file     sampleFile
}

// drillSnapshots picks the snapshots: args.SnapshotID alone, or the
// latest snapshot of the host's paths and the latest of each source.
func (a *Agent) drillSnapshots(ctx context.Context, spec runner.Spec, args *wire.DrillArgs) (string, []drillSource, error) {
	if args.SnapshotID != "" {
		return args.SnapshotID, nil, nil
	}
	host := args.Hostname
	if host == "" {
		host, _ = os.Hostname()
	}
	r := a.runner.Run(ctx, runner.Spec{Kind: runner.KindSnapshots, Repo: spec.Repo, Timeout: spec.Timeout,
		Snapshots: runner.SnapshotsArgs{Hosts: []string{host}}}, runner.Hooks{})
	if r.Status != runner.StatusSucceeded {
		return "", nil, fmt.Errorf("listing the snapshots: %s", r.Error)
	}
	var snaps []runner.Snapshot
	if err := json.Unmarshal(r.Output, &snaps); err != nil {
		return "", nil, fmt.Errorf("listing the snapshots: %w", err)
	}
	sort.Slice(snaps, func(i, j int) bool { return snaps[i].Time.Before(snaps[j].Time) })
	var main string
	latest := map[string]string{}
	for _, s := range snaps {
		if src := wire.SourceOfTags(s.Tags); src != "" {
			latest[src] = s.ID
		} else {
			main = s.ID
		}
	}
	var sources []drillSource
	for _, name := range sortedNames(latest) {
		sources = append(sources, drillSource{name: name, id: latest[name]})
	}
	if main == "" && len(sources) == 0 {
		return "", nil, fmt.Errorf("the repository has no snapshot of host %q to drill", host)
	}
	return main, sources, nil
}

// verifyDrillFile checks a restored file: there, of its size, and, when
// live and the live file is unchanged since the snapshot, of its content.
// It returns the bytes read and a mismatch ("" when none).
func (a *Agent) verifyDrillFile(restored string, f sampleFile, live bool) (int64, string) {
	fi, err := os.Stat(restored)
	if err != nil {
		return 0, "not restored"
	}
	if fi.Size() != f.size {
		return fi.Size(), fmt.Sprintf("restored %d bytes, the snapshot has %d", fi.Size(), f.size)
	}
	if !live || !liveUnchanged(f) {
		return fi.Size(), ""
	}
	got, err1 := fileSHA256(restored)
	want, err2 := fileSHA256(localPath(f.path))
	switch {
	case err1 != nil:
		return fi.Size(), "cannot read the restored file: " + err1.Error()
	case err2 != nil:
		return fi.Size(), "" // the live file went away meanwhile: nothing to compare
	case got != want:
		return fi.Size(), "content differs from the live file, which is unchanged since the snapshot (same size and mtime)"
	}
	return fi.Size(), ""
}

// liveUnchanged: the file at its original place still has the snapshot's
// size and modification time, so its bytes should be the same.
func liveUnchanged(f sampleFile) bool {
	fi, err := os.Stat(localPath(f.path))
	return err == nil && fi.Mode().IsRegular() && fi.Size() == f.size && fi.ModTime().Equal(f.mtime)
}

func fileSHA256(p string) ([32]byte, error) {
	var sum [32]byte
	fh, err := os.Open(p)
	if err != nil {
		return sum, err
	}
	defer fh.Close()
	h := sha256.New()
	if _, err := io.Copy(h, fh); err != nil {
		return sum, err
	}
	copy(sum[:], h.Sum(nil))
	return sum, nil
}

// localPath is a tree path's place on this machine (/C/Users/x is
// C:\Users\x on Windows).
func localPath(tree string) string {
	if runtime.GOOS == "windows" {
		if p, err := TreePathToWindows(tree); err == nil {
			return p
		}
	}
	return filepath.FromSlash(tree)
}

// localTreePath is where restic restores a tree path below a target.
func localTreePath(tree string) string { return filepath.FromSlash(strings.TrimPrefix(tree, "/")) }

// escapePattern makes a path an --include pattern matching only itself.
func escapePattern(p string) string {
	if runtime.GOOS == "windows" {
		return p // '\' is the separator there; restic's patterns have no escape
	}
	var b strings.Builder
	for _, c := range p {
		if strings.ContainsRune(`*?[\`, c) {
			b.WriteByte('\\')
		}
		b.WriteRune(c)
	}
	return b.String()
}

// sampler picks the drill's sample while restic lists the snapshot, in
// memory bounded by the sample: half the files uniformly at random (most
// files are small), half weighted by size (A-Res reservoir sampling:
// large files appear too), then as many as fit the byte budget.
type sampler struct {
	files   int
	bytes   int64
	rng     *rand.Rand
	seen    int
	uniform []sampleFile
	heavy   weightedHeap
}

func newSampler(files int, bytes int64, rng *rand.Rand) *sampler {
	return &sampler{files: files, bytes: bytes, rng: rng}
}

func (s *sampler) offer(f sampleFile) {
	if f.size > s.bytes {
		return // could never fit the budget
	}
	s.seen++
	// The uniform reservoir holds a whole sample: files the weighted one
	// also picked are skipped when the two merge.
	k := s.files
	if len(s.uniform) < k {
		s.uniform = append(s.uniform, f)
	} else if j := s.rng.IntN(s.seen); j < k {
		s.uniform[j] = f
	}
	if hk := s.files / 2; hk > 0 && f.size > 0 {
		key := math.Pow(s.rng.Float64(), 1/float64(f.size))
		if s.heavy.Len() < hk {
			heap.Push(&s.heavy, weighted{f, key})
		} else if key > s.heavy[0].key {
			s.heavy[0] = weighted{f, key}
			heap.Fix(&s.heavy, 0)
		}
	}
}

// result merges both reservoirs and keeps what fits the budget, the
// large files first so that one of them is in whenever one fits.
func (s *sampler) result() []sampleFile {
	var all []sampleFile
	seen := map[string]bool{}
	for _, w := range s.heavy {
		all = append(all, w.f)
	}
	sort.Slice(all, func(i, j int) bool { return all[i].size > all[j].size })
	all = append(all, s.uniform...)
	var out []sampleFile
	var used int64
	for _, f := range all {
		if seen[f.path] || len(out) >= s.files || used+f.size > s.bytes {
			continue
		}
		seen[f.path] = true
		out = append(out, f)
		used += f.size
	}
	return out
}

type weighted struct {
	f   sampleFile
	key float64
}

type weightedHeap []weighted

func (h weightedHeap) Len() int           { return len(h) }
func (h weightedHeap) Less(i, j int) bool { return h[i].key < h[j].key }
func (h weightedHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *weightedHeap) Push(x any)        { *h = append(*h, x.(weighted)) }
func (h *weightedHeap) Pop() any {
	old := *h
	x := old[len(old)-1]
	*h = old[:len(old)-1]
	return x
}

func sortedNames(m map[string]string) []string {
	names := make([]string, 0, len(m))
	for k := range m {
		names = append(names, k)
	}
	sort.Strings(names)
	return names
}

func short(id string) string {
	if len(id) > 8 {
		return id[:8]
	}
	return id
}

func humanBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}

func clipText(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
