package e2e

import (
	"bufio"
	"fmt"
	"io"
	"log"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// chaosScale is the size of the chaos suite: the default fits in make test;
// RM_CHAOS=full (make chaos) runs more jobs per fault and repeats faults.
type chaosScale struct {
	name string
	jobs int // jobs per fault
	reps int // repetitions of a fault
	cuts int // connection cuts in the TCP fault
}

func chaosSize() chaosScale {
	if os.Getenv("RM_CHAOS") == "full" {
		return chaosScale{name: "full", jobs: 8, reps: 4, cuts: 15}
	}
	return chaosScale{name: "default", jobs: 2, reps: 1, cuts: 3}
}

// ---- the table of faults × outcome ----

type chaosRow struct {
	Order         int
	Fault         string
	Jobs          int
	States        string
	SnapsExpected int
	SnapsFound    int
	Duplicates    int // snapshots beyond one per job plus agent runs beyond one per job
	DupDeliveries int // duplicate deliveries the fault made and the receivers absorbed
	Verdict       string
	Wall          time.Duration
	Notes         []string
}

var chaosTable struct {
	mu   sync.Mutex
	rows map[int]chaosRow
}

const chaosArtifact = "artifacts/chaos.md"

// record adds a row, logs it and rewrites the artifact with every row so
// far: whichever chaos test ends last leaves the whole table.
func (r chaosRow) record(t *testing.T) {
	t.Helper()
	chaosTable.mu.Lock()
	defer chaosTable.mu.Unlock()
	if chaosTable.rows == nil {
		chaosTable.rows = map[int]chaosRow{}
	}
	chaosTable.rows[r.Order] = r
	var rows []chaosRow
	for _, x := range chaosTable.rows {
		rows = append(rows, x)
	}
	sort.Slice(rows, func(i, j int) bool { return rows[i].Order < rows[j].Order })
	table := renderChaosTable(rows)
	t.Logf("chaos: %s\n%s", r.Fault, renderChaosTable([]chaosRow{r}))
	if err := os.MkdirAll(filepath.Dir(chaosArtifact), 0o755); err != nil {
		t.Errorf("chaos table: %v", err)
		return
	}
	doc := fmt.Sprintf("# Chaos suite: faults × outcome\n\nSize: %s (RM_CHAOS=%q), written %s by `go test ./e2e -run TestChaos`.\n"+
		"Invariants per fault: every job created reaches a terminal state; none ran twice (restic's own snapshot list, one tag per job; "+
		"agent-side runs from the agent logs); a succeeded backup has its snapshot and a failed one none; the store agrees with itself "+
		"(list vs GET /jobs/{id}, host last_backup, nothing left queued or running).\n\n%s",
		chaosSize().name, os.Getenv("RM_CHAOS"), time.Now().UTC().Format(time.RFC3339), table)
	if err := os.WriteFile(chaosArtifact, []byte(doc), 0o644); err != nil {
		t.Errorf("chaos table: %v", err)
	}
}

func renderChaosTable(rows []chaosRow) string {
	var b strings.Builder
	b.WriteString("| # | fault | jobs | terminal states | snapshots expected/found | duplicates | duplicate deliveries absorbed | wall | verdict |\n")
	b.WriteString("|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %d | %s | %d | %s | %d/%d | %d | %d | %.1fs | %s |\n", r.Order, r.Fault, r.Jobs, r.States,
			r.SnapsExpected, r.SnapsFound, r.Duplicates, r.DupDeliveries, r.Wall.Seconds(), r.Verdict)
	}
	var notes []string
	for _, r := range rows {
		for _, n := range r.Notes {
			notes = append(notes, fmt.Sprintf("- %d. %s", r.Order, n))
		}
	}
	if len(notes) > 0 {
		b.WriteString("\n" + strings.Join(notes, "\n") + "\n")
	}
	return b.String()
}

// ---- a fault and its bookkeeping ----

// tracked is a job a fault created, with the terminal states it may end in.
type tracked struct {
	ID    string
	Tag   string   // the backup's own tag ("" for other kinds)
	Allow []string // acceptable terminal states (nil: any)
	Host  *chaosAgent
}

// fault runs one fault and records its row even when the fault stops the
// test half-way (t.Fatal runs deferred calls).
type fault struct {
	t      *testing.T
	f      *chaosFleet
	row    chaosRow
	start  time.Time
	jobs   []tracked
	dupDel int
	done   bool
	bad    int // invariants broken
	notes  []string
}

func (f *chaosFleet) fault(order int, name string) *fault {
	return &fault{t: f.t, f: f, row: chaosRow{Order: order, Fault: name}, start: time.Now()}
}

func (ft *fault) note(format string, a ...any) {
	ft.notes = append(ft.notes, fmt.Sprintf(format, a...))
}

// violation is an invariant broken: an error in the test and a note.
func (ft *fault) violation(format string, a ...any) {
	ft.t.Helper()
	msg := fmt.Sprintf(format, a...)
	ft.t.Errorf("%s: %s", ft.row.Fault, msg)
	ft.bad++
	ft.notes = append(ft.notes, "VIOLATION: "+msg)
}

func (ft *fault) track(id, tag string, host *chaosAgent, allow ...string) string {
	ft.jobs = append(ft.jobs, tracked{ID: id, Tag: tag, Allow: allow, Host: host})
	return id
}

// finish records the row; call it deferred.
func (ft *fault) finish() {
	if ft.done {
		return
	}
	ft.done = true
	ft.row.Wall = time.Since(ft.start)
	ft.row.Notes = ft.notes
	switch {
	case ft.row.Verdict == "":
		ft.row.Verdict = "FAIL (aborted, see the test log)"
		ft.row.Jobs = len(ft.jobs)
	case ft.bad > 0:
		ft.row.Verdict = fmt.Sprintf("FAIL (%d violations)", ft.bad)
	}
	ft.row.record(ft.t)
}

// ---- the fleet ----

// chaosFleet is a server, a rest-server behind an upload gate, a repository
// and enrolled agents, each reaching the broker through its own TCP proxy.
type chaosFleet struct {
	t         *testing.T
	srv       *server
	restDir   string // rest-server's root; the repository is restDir/repo1
	directURL string // the repository straight on rest-server (for checks)
	gate      *uploadGate
	repoID    string
	password  string
	agents    []*chaosAgent
	seq       atomic.Int64
}

type chaosAgent struct {
	f     *chaosFleet
	name  string
	host  harness.HostCreated
	ap    *agentProc
	link  *tcpProxy
	procs []*harness.Proc // every incarnation, for the run counts
}

func newChaosFleet(t *testing.T, agents int, serverArgs ...string) *chaosFleet {
	t.Helper()
	// Health refreshes would queue behind the gated backups and blur the
	// counts: they run when a fault asks for them (and at the sweep).
	args := append([]string{"--health-delay=10m"}, serverArgs...)
	f := &chaosFleet{t: t, srv: newServer(t, args...), password: "chaos-" + strconv.FormatInt(rand.Int64(), 36)}
	f.restDir = t.TempDir()
	rs := restServer(t, f.restDir)
	f.directURL = "rest:http://" + rs + "/repo1/"
	f.gate = newUploadGate(t, rs)
	f.repoID = f.srv.createRepo("chaos", "rest:http://"+f.gate.addr+"/repo1/", f.password)
	for i := range agents {
		f.addAgent(fmt.Sprintf("chaos-%d", i+1))
	}
	for _, a := range f.agents {
		a.start()
	}
	for _, a := range f.agents {
		f.srv.waitOnline(a.host.ID, true)
	}
	id := f.srv.createJob(f.agents[0].host.ID, map[string]any{"kind": "init", "repo_id": f.repoID})
	if j := f.srv.waitJob(id, 2*time.Minute); j.Status != "succeeded" {
		t.Fatalf("init: %s: %s %s", j.Status, j.Error, j.StderrTail)
	}
	return f
}

// addAgent enrols a host whose agent reaches the broker through a proxy
// the test can cut.
func (f *chaosFleet) addAgent(name string) *chaosAgent {
	f.t.Helper()
	a := &chaosAgent{f: f, name: name, host: f.srv.createHost(name)}
	f.srv.bindHosts(f.repoID, a.host.ID)
	a.ap = enrollAgent(f.t, f.srv, a.host.EnrollToken, testenv.Restic(f.t))
	a.link = newTCPProxy(f.t, f.srv.MQTTAddr)
	b, err := os.ReadFile(a.ap.Config)
	if err != nil {
		f.t.Fatal(err)
	}
	if !strings.Contains(string(b), f.srv.MQTTAddr) {
		f.t.Fatalf("agent config has no broker address %s:\n%s", f.srv.MQTTAddr, b)
	}
	if err := os.WriteFile(a.ap.Config, []byte(strings.ReplaceAll(string(b), f.srv.MQTTAddr, a.link.addr())), 0o600); err != nil {
		f.t.Fatal(err)
	}
	f.agents = append(f.agents, a)
	return a
}

func (a *chaosAgent) start() {
	a.f.t.Helper()
	a.ap.start(a.f.t)
	a.procs = append(a.procs, a.ap.Proc)
}

func (a *chaosAgent) running() bool {
	select {
	case <-a.ap.Proc.Done():
		return false
	default:
		return true
	}
}

// stateDir is the agent's state directory (beside its config).
func (a *chaosAgent) stateDir() string { return filepath.Join(filepath.Dir(a.ap.Config), "state") }

// logCount counts the agent's log lines (over every incarnation) with msg
// for the job.
func (a *chaosAgent) logCount(msg, jobID string) int {
	re := regexp.MustCompile(`msg="?` + regexp.QuoteMeta(msg) + `"? .*job_id=` + regexp.QuoteMeta(jobID) + `( |$)`)
	n := 0
	for _, p := range a.procs {
		sc := bufio.NewScanner(strings.NewReader(p.Output()))
		sc.Buffer(make([]byte, 1<<20), 1<<20)
		for sc.Scan() {
			if re.MatchString(sc.Text()) {
				n++
			}
		}
	}
	return n
}

func (a *chaosAgent) runs(jobID string) int { return a.logCount("job starting", jobID) }

func (a *chaosAgent) dupCommands(jobID string) int {
	return a.logCount("duplicate command ignored", jobID)
}

// resticChild is the PID of the restic the agent runs, or 0.
func (a *chaosAgent) resticChild() int {
	ppid := a.ap.Proc.Pid()
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "stat"))
		if err != nil {
			continue
		}
		// pid (comm) state ppid ...
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(restic") {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) > 1 && fields[1] == strconv.Itoa(ppid) {
			return pid
		}
	}
	return 0
}

func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	// A zombie has exited (its parent, the test's reaper, may not have waited).
	s := string(b)
	i := strings.LastIndexByte(s, ')')
	return i < 0 || !strings.HasPrefix(strings.TrimSpace(s[i+1:]), "Z")
}

// source makes a backup source with content no other job has, so that the
// backup must upload a data pack (and so meet the upload gate).
func (f *chaosFleet) source() string {
	f.t.Helper()
	dir := f.t.TempDir()
	r := rand.New(rand.NewChaCha8([32]byte{byte(f.seq.Add(1)), byte(time.Now().UnixNano())}))
	b := make([]byte, 512<<10)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	if err := os.WriteFile(filepath.Join(dir, "unique.bin"), b, 0o644); err != nil {
		f.t.Fatal(err)
	}
	for i := range 5 {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("f%d.txt", i)), []byte(strings.Repeat("chaos\n", 100+i)), 0o644); err != nil {
			f.t.Fatal(err)
		}
	}
	return dir
}

// backup creates a backup job with a tag of its own and tracks it.
func (ft *fault) backup(a *chaosAgent, allow ...string) string {
	ft.t.Helper()
	tag := fmt.Sprintf("chaos-%d-%d", ft.row.Order, ft.f.seq.Add(1))
	id := ft.f.srv.createJob(a.host.ID, map[string]any{"kind": "backup", "repo_id": ft.f.repoID,
		"args": map[string]any{"paths": []string{ft.f.source()}, "tags": []string{tag}}})
	return ft.track(id, tag, a, allow...)
}

// other creates a job of another kind and tracks it.
func (ft *fault) other(a *chaosAgent, kind string, args any, allow ...string) string {
	ft.t.Helper()
	body := map[string]any{"kind": kind, "repo_id": ft.f.repoID}
	if args != nil {
		body["args"] = args
	}
	return ft.track(ft.f.srv.createJob(a.host.ID, body), "", a, allow...)
}

// waitRunning waits until one of the jobs runs on its agent and restic is
// held at the upload gate: mid-backup, holding its repository lock. Jobs
// that reach the agent together may start in any order.
func (f *chaosFleet) waitRunning(ids ...string) harness.Job {
	f.t.Helper()
	var j harness.Job
	eventually(f.t, 90*time.Second, fmt.Sprintf("one of %v running at the upload gate", ids), func() error {
		if f.gate.waiting() == 0 {
			return errorf("restic not at the upload gate yet")
		}
		for _, id := range ids {
			if j = f.srv.job(id); j.Status == "running" {
				return nil
			}
		}
		return errorf("none running")
	})
	return j
}

// restartServer kills (or stops) the server and starts it again on the
// same data directory and addresses.
func (f *chaosFleet) restartServer(kill bool) {
	f.t.Helper()
	if kill {
		f.srv.Proc.Kill()
	} else {
		stop(f.t, f.srv.Proc)
	}
	f.srv = startServer(f.t, f.srv.Data, f.srv.HTTPAddr, f.srv.MQTTAddr, "--health-delay=10m")
}

// snapshots lists the repository's snapshots with restic itself, straight
// from rest-server.
func (f *chaosFleet) snapshots() []resticSnap {
	f.t.Helper()
	return resticSnapshots(f.t, f.directURL, f.password, "--no-lock")
}

// locks lists the repository's lock files on disk.
func (f *chaosFleet) locks() []string {
	ents, _ := os.ReadDir(filepath.Join(f.restDir, "repo1", "locks"))
	var out []string
	for _, e := range ents {
		out = append(out, e.Name())
	}
	return out
}

// startOrder fails the fault when jobs of one agent and repository,
// created in this order, started in another: the agent runs one at a time,
// and the others wait in order (also when a broker hands a reconnecting
// agent its queue out of order; see agent.Agent.gathered).
func (ft *fault) startOrder(ids []string) {
	ft.t.Helper()
	js := make([]harness.Job, len(ids))
	for i, id := range ids {
		js[i] = ft.f.srv.job(id)
		if js[i].StartedAt.IsZero() {
			return
		}
	}
	sorted := append([]harness.Job(nil), js...)
	sort.Slice(sorted, func(i, j int) bool { return sorted[i].StartedAt.Before(sorted[j].StartedAt) })
	for i := range js {
		if sorted[i].ID != js[i].ID {
			var order []string
			for _, j := range sorted {
				order = append(order, strconv.Itoa(indexOf(ids, j.ID)+1))
			}
			ft.violation("jobs created in order 1..%d for one agent and repository started in the order %s", len(ids), strings.Join(order, ","))
			return
		}
	}
}

func indexOf(list []string, s string) int {
	for i, x := range list {
		if x == s {
			return i
		}
	}
	return -1
}

// ---- invariants ----

// settle waits for every job of the fault, and then every job of the
// console, to reach a terminal state; what does not is reported lost.
func (ft *fault) settle(timeout time.Duration) map[string]harness.Job {
	ft.t.Helper()
	f := ft.f
	deadline := time.Now().Add(timeout)
	got := map[string]harness.Job{}
	for {
		pending := 0
		for _, tr := range ft.jobs {
			j := f.srv.job(tr.ID)
			got[tr.ID] = j
			if !harness.Terminal(j.Status) {
				pending++
			}
		}
		if pending == 0 {
			for _, j := range f.srv.jobs() {
				if !harness.Terminal(j.Status) {
					pending++
				}
			}
		}
		if pending == 0 || time.Now().After(deadline) {
			return got
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// check verifies the invariants for the fault's jobs and the whole store,
// and fills in the row.
func (ft *fault) check(timeout time.Duration) {
	ft.t.Helper()
	f := ft.f
	got := ft.settle(timeout)
	snaps := f.snapshots()
	byTag := map[string][]resticSnap{}
	for _, s := range snaps {
		for _, tag := range s.Tags {
			byTag[tag] = append(byTag[tag], s)
		}
	}
	states := map[string]int{}
	expected, found, dups := 0, 0, 0
	for _, tr := range ft.jobs {
		j := got[tr.ID]
		states[j.Status]++
		if !harness.Terminal(j.Status) {
			ft.violation("job %s (%s) lost: still %s (error %q)", j.ID, j.Kind, j.Status, j.Error)
		} else if len(tr.Allow) > 0 && !contains(tr.Allow, j.Status) {
			ft.violation("job %s (%s) ended %s (%s), want %s", j.ID, j.Kind, j.Status, j.Error, strings.Join(tr.Allow, " or "))
		}
		if tr.Host != nil {
			if n := tr.Host.runs(tr.ID); n > 1 {
				dups += n - 1
				ft.violation("job %s ran %d times on its agent", j.ID, n)
			}
			ft.dupDel += tr.Host.dupCommands(tr.ID)
		}
		if tr.Tag == "" {
			continue
		}
		in := byTag[tr.Tag]
		found += len(in)
		if len(in) > 1 {
			dups += len(in) - 1
			ft.violation("job %s has %d snapshots in the repository", j.ID, len(in))
		}
		switch j.Status {
		case "succeeded", "partial":
			expected++
			if len(in) == 0 {
				ft.violation("job %s %s, but the repository has no snapshot tagged %s", j.ID, j.Status, tr.Tag)
			} else if in[0].ID != j.SnapshotID {
				ft.violation("job %s names snapshot %s; the repository has %s", j.ID, j.SnapshotID, in[0].ID)
			}
		default:
			if len(in) > 0 {
				ft.violation("job %s ended %s (%s), but the repository has its snapshot %s", j.ID, j.Status, j.Error, in[0].ID)
			}
		}
	}
	ft.storeConsistent(snaps)
	ft.row.Jobs = len(ft.jobs)
	ft.row.States = summarise(states)
	ft.row.SnapsExpected, ft.row.SnapsFound = expected, found
	ft.row.Duplicates = dups
	ft.row.DupDeliveries = ft.dupDel
	ft.row.Verdict = "PASS"
}

// drain waits (without failing) for the fault's jobs so far to end, so that
// a repetition does not close the gate on the last one's backups.
func (ft *fault) drain(timeout time.Duration) {
	ft.t.Helper()
	deadline := time.Now().Add(timeout)
	for _, tr := range ft.jobs {
		ft.f.waitEnd(tr.ID, max(time.Until(deadline), 0))
	}
}

// waitEnd waits for a job to end without failing the test: a job that does
// not end is an invariant broken, reported by check.
func (f *chaosFleet) waitEnd(id string, timeout time.Duration) harness.Job {
	f.t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		j := f.srv.job(id)
		if harness.Terminal(j.Status) || time.Now().After(deadline) {
			return j
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// storeConsistent: the list agrees with GET /jobs/{id}, nothing is left
// queued or running, and each host's last_backup names a job that exists,
// ended as it says, and whose snapshot exists.
func (ft *fault) storeConsistent(snaps []resticSnap) {
	ft.t.Helper()
	f := ft.f
	list := f.srv.jobs()
	byID := map[string]harness.Job{}
	for _, lj := range list {
		if _, dup := byID[lj.ID]; dup {
			ft.violation("job %s listed twice", lj.ID)
		}
		byID[lj.ID] = lj
		if !harness.Terminal(lj.Status) {
			ft.violation("job %s (%s, %s) is still %s", lj.ID, lj.Kind, lj.ActorKind, lj.Status)
		}
		gj := f.srv.job(lj.ID)
		if gj.Status != lj.Status || gj.SnapshotID != lj.SnapshotID || !gj.EndedAt.Equal(lj.EndedAt) {
			ft.violation("job %s: list says %s/%s/%s, GET says %s/%s/%s", lj.ID, lj.Status, lj.SnapshotID, lj.EndedAt, gj.Status, gj.SnapshotID, gj.EndedAt)
		}
	}
	for _, tr := range ft.jobs {
		if _, ok := byID[tr.ID]; !ok {
			ft.violation("job %s missing from GET /jobs", tr.ID)
		}
	}
	inRepo := map[string]bool{}
	for _, s := range snaps {
		inRepo[s.ID] = true
	}
	for _, a := range f.agents {
		h := f.srv.host(a.host.ID)
		// The newest backup the agent reported on (console-side ends such
		// as expiry do not count as a backup that ran).
		var newest *harness.Job
		for _, j := range list {
			if j.HostID == a.host.ID && j.Kind == "backup" && j.ExitCode != nil && (newest == nil || j.EndedAt.After(newest.EndedAt)) {
				j := j
				newest = &j
			}
		}
		lb := h.LastBackup
		switch {
		case lb == nil && newest == nil:
		case lb == nil:
			ft.violation("host %s has no last_backup; job %s ended %s", a.name, newest.ID, newest.Status)
		default:
			j, ok := byID[lb.JobID]
			switch {
			case !ok:
				ft.violation("host %s last_backup names job %s, which does not exist", a.name, lb.JobID)
			case j.Status != lb.Status || j.SnapshotID != lb.SnapshotID:
				ft.violation("host %s last_backup %s/%s, job %s says %s/%s", a.name, lb.Status, lb.SnapshotID, j.ID, j.Status, j.SnapshotID)
			case newest != nil && newest.EndedAt.After(lb.EndedAt):
				ft.violation("host %s last_backup is job %s, but job %s ended later", a.name, lb.JobID, newest.ID)
			}
			if lb.SnapshotID != "" && !inRepo[lb.SnapshotID] {
				ft.violation("host %s last_backup names snapshot %s, which is not in the repository", a.name, lb.SnapshotID)
			}
		}
	}
}

func summarise(states map[string]int) string {
	var keys []string
	for k := range states {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var parts []string
	for _, k := range keys {
		parts = append(parts, fmt.Sprintf("%d %s", states[k], k))
	}
	return strings.Join(parts, ", ")
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// ---- the upload gate: restic → rest-server ----

// uploadGate is an HTTP proxy in front of rest-server that, while closed,
// holds every upload of a data pack. A backup then stops mid-way: restic
// has taken its lock, read its files and keeps reporting progress, but
// cannot finish until the gate opens. Everything else (config, keys,
// index, locks, snapshots) passes.
type uploadGate struct {
	addr    string
	proxy   *httputil.ReverseProxy
	mu      sync.Mutex
	openCh  chan struct{} // closed while the gate is open
	held    atomic.Int32
	srv     *http.Server
	stopped chan struct{}
}

func newUploadGate(t testing.TB, target string) *uploadGate {
	t.Helper()
	u, _ := url.Parse("http://" + target)
	g := &uploadGate{proxy: httputil.NewSingleHostReverseProxy(u), openCh: make(chan struct{}), stopped: make(chan struct{})}
	close(g.openCh)
	g.proxy.ErrorLog = log.New(io.Discard, "", 0)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	g.addr = l.Addr().String()
	g.srv = &http.Server{Handler: g, ErrorLog: log.New(io.Discard, "", 0)}
	go func() {
		defer close(g.stopped)
		_ = g.srv.Serve(l)
	}()
	t.Cleanup(func() {
		g.open()
		_ = g.srv.Close()
		<-g.stopped
	})
	return g
}

func (g *uploadGate) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Method == http.MethodPost && strings.Contains(r.URL.Path, "/data/") {
		g.mu.Lock()
		ch := g.openCh
		g.mu.Unlock()
		g.held.Add(1)
		select {
		case <-ch:
		case <-r.Context().Done():
		}
		g.held.Add(-1)
		if r.Context().Err() != nil {
			return
		}
	}
	g.proxy.ServeHTTP(w, r)
}

func (g *uploadGate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.openCh:
		g.openCh = make(chan struct{})
	default:
	}
}

func (g *uploadGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	select {
	case <-g.openCh:
	default:
		close(g.openCh)
	}
}

// waiting is the number of uploads held at the gate.
func (g *uploadGate) waiting() int { return int(g.held.Load()) }

// ---- a TCP proxy that can cut its connections ----

// tcpProxy forwards connections to target; cut closes every one of them at
// once, as a network failure would (both sides see their connection drop).
type tcpProxy struct {
	l        net.Listener
	target   string
	mu       sync.Mutex
	conns    map[net.Conn]struct{}
	accepted int
	blocked  bool // new connections are closed at once, as if the host were unreachable
	wg       sync.WaitGroup
}

func newTCPProxy(t testing.TB, target string) *tcpProxy {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &tcpProxy{l: l, target: target, conns: map[net.Conn]struct{}{}}
	p.wg.Add(1)
	go p.serve()
	t.Cleanup(func() {
		_ = p.l.Close()
		p.cut()
		p.wg.Wait()
	})
	return p
}

func (p *tcpProxy) addr() string { return p.l.Addr().String() }

func (p *tcpProxy) serve() {
	defer p.wg.Done()
	for {
		c, err := p.l.Accept()
		if err != nil {
			return
		}
		p.mu.Lock()
		blocked := p.blocked
		p.mu.Unlock()
		if blocked {
			_ = c.Close()
			continue
		}
		up, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			_ = c.Close()
			continue
		}
		p.mu.Lock()
		p.conns[c], p.conns[up] = struct{}{}, struct{}{}
		p.accepted++
		p.mu.Unlock()
		p.wg.Add(2)
		pipe := func(dst, src net.Conn) {
			defer p.wg.Done()
			_, _ = io.Copy(dst, src)
			_ = dst.Close()
			_ = src.Close()
			p.mu.Lock()
			delete(p.conns, dst)
			delete(p.conns, src)
			p.mu.Unlock()
		}
		go pipe(up, c)
		go pipe(c, up)
	}
}

// cut closes every open connection and returns how many pairs it cut.
func (p *tcpProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		// RST rather than FIN: the peer learns of it only when it next
		// reads or writes, like a dropped link.
		if tc, ok := c.(*net.TCPConn); ok {
			_ = tc.SetLinger(0)
		}
		_ = c.Close()
		delete(p.conns, c)
	}
	return n
}

// block cuts the link and keeps it down until unblock.
func (p *tcpProxy) block() {
	p.mu.Lock()
	p.blocked = true
	p.mu.Unlock()
	p.cut()
}

func (p *tcpProxy) unblock() {
	p.mu.Lock()
	p.blocked = false
	p.mu.Unlock()
}

func (p *tcpProxy) connections() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.accepted
}
