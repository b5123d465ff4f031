package fleet

import (
	"context"
	"fmt"
	"log/slog"
	"sync"
	"sync/atomic"
	"time"

	"github.com/restic-manager/restic-manager/console/progress"
	"github.com/restic-manager/restic-manager/storage"
)

// Publisher sends console → agent messages. The embedded broker implements
// it; so does the client of an external broker.
type Publisher interface {
	Publish(topic string, payload []byte, retain bool, expiry time.Duration) error
}

// ParallelPublisher is implemented by a Publisher whose Publish waits for
// a network round trip (an external broker's PUBACK): a bulk publish (a
// policy rollout) keeps that many Publish calls outstanding instead of the
// few that suffice for the embedded broker, whose Publish is an inline
// call that needs no more than the cores.
type ParallelPublisher interface {
	PublishParallelism() int
}

// publishWorkers is how many goroutines a bulk publish uses.
func (f *Fleet) publishWorkers() int {
	if pp, ok := f.pub.(ParallelPublisher); ok {
		if n := pp.PublishParallelism(); n > 0 {
			return n
		}
	}
	return 8
}

// Disconnector is implemented by a Publisher that can drop a client's
// connection (the embedded broker can; an external one may not).
type Disconnector interface {
	Disconnect(clientID string)
}

// Instruments counts what ingest sees; the console's metrics implement it.
type Instruments interface {
	Ingested(kind string)
	Rejected()
	Fire(outcome string) // accepted, duplicate or refused
}

// Options configure a Fleet.
type Options struct {
	Store     *storage.Store
	Publisher Publisher
	Logger    *slog.Logger
	// CommandExpiry bounds how long a command waits for an offline agent
	// (default 24h).
	CommandExpiry time.Duration
	// OfflineAfter is how long a host may be offline before its state
	// carries the host_offline condition (default 1h).
	OfflineAfter time.Duration
	// JobRetention is how long finished jobs (with their output) are kept
	// (default 180 days; negative keeps them forever). Unfinished jobs and
	// each host's last job, backup and success are never deleted.
	JobRetention time.Duration
	// ForgetGuardPercent is the share of a host's snapshots a forget may
	// remove without an admin's approval (default 50).
	ForgetGuardPercent int
	// LostGrace is how long after an agent listed its running jobs a job
	// it did not list, and that reported nothing since, ends as lost
	// (default 2 minutes).
	LostGrace time.Duration
	// Instruments, when set, counts ingest.
	Instruments Instruments
}

// Fleet is the console's model of the fleet: it owns every job from its
// creation to its end, ingests what agents send, keeps repository health
// and pushes schedules. It speaks no HTTP.
type Fleet struct {
	opts  Options
	store *storage.Store
	pub   Publisher
	log   *slog.Logger
	inst  Instruments

	// gate keeps exclusive operations alone on their repository.
	gate *gate
	// progress holds running jobs' latest progress until it is written.
	progress *progress.Cache
	// output stores what index jobs send (repos.Repos registers it).
	output atomic.Pointer[OutputHandler]
	// binder binds hosts to repositories through policies (console/policy).
	binder atomic.Pointer[PolicyBinder]
	// guard gives a forget its policy's threshold (console/policy).
	guard atomic.Pointer[func(storage.Job) int]
	// events fans job updates out to SSE listeners.
	events *hub
	online onlineQueue
	// lost holds what agents said they run, for endLostJobs.
	lost lostJobs

	obs observers

	// rpo finds the RPO a host's policies set (SetRPO, rpo.go).
	rpo atomic.Pointer[RPOFunc]
	// prep completes a job request before its checks (SetJobPrep).
	prep atomic.Pointer[JobPrep]

	// bg owns background work (end-of-job observers, sweeps, re-dispatch).
	// bgMu orders goBG against Close: nothing starts once Close began
	// (timers may fire during it).
	bgMu     sync.RWMutex
	closed   bool
	bgCtx    context.Context
	bgCancel context.CancelFunc
	bg       sync.WaitGroup
}

// New builds a Fleet and starts its background loops; Close stops them.
func New(opts Options) (*Fleet, error) {
	if opts.Store == nil || opts.Publisher == nil {
		return nil, fmt.Errorf("fleet: Store and Publisher are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	if opts.CommandExpiry == 0 {
		opts.CommandExpiry = 24 * time.Hour
	}
	if opts.OfflineAfter == 0 {
		opts.OfflineAfter = time.Hour
	}
	if opts.ForgetGuardPercent <= 0 {
		opts.ForgetGuardPercent = 50
	}
	if opts.LostGrace == 0 {
		opts.LostGrace = lostGrace
	}
	if opts.Instruments == nil {
		opts.Instruments = noInstruments{}
	}
	f := &Fleet{
		opts:   opts,
		store:  opts.Store,
		pub:    opts.Publisher,
		log:    opts.Logger.With("component", "fleet"),
		inst:   opts.Instruments,
		events: newHub(),
		// The latest progress of running jobs, written behind (progress.go).
		progress: progress.New(),
	}
	f.gate = newGate(f)
	f.bgCtx, f.bgCancel = context.WithCancel(context.Background())
	if err := f.listAccess(f.bgCtx); err != nil {
		return nil, fmt.Errorf("fleet: repository access lists: %w", err)
	}
	// The fleet's own observers of a job's end come first: the gate lets
	// the next job of the repository go, health follows the repository.
	f.OnJobEnd(f.gate.jobEnded)
	f.goBG(f.sweepLoop)
	f.goBG(f.gate.loop)
	f.goBG(f.retentionLoop)
	f.goBG(f.progressLoop)
	return f, nil
}

// Close stops background work.
func (f *Fleet) Close() {
	f.bgMu.Lock()
	f.closed = true
	f.bgMu.Unlock()
	f.online.stop()
	f.bgCancel()
	f.bg.Wait()
}

// Store is the fleet's store, for readers (the API and pages read records
// directly; every change to a job, schedule or repository goes through the
// Fleet).
func (f *Fleet) Store() *storage.Store { return f.store }

// Publisher is where the fleet publishes; other parts of the console
// (alerts, integrations) publish through the same one.
func (f *Fleet) Publisher() Publisher { return f.pub }

// goBG runs fn in the background, owned by the fleet; once Close has
// begun it runs nothing and returns false.
func (f *Fleet) goBG(fn func(ctx context.Context)) bool {
	f.bgMu.RLock()
	defer f.bgMu.RUnlock()
	if f.closed {
		return false
	}
	f.bg.Add(1)
	go func() {
		defer f.bg.Done()
		fn(f.bgCtx)
	}()
	return true
}

// Background runs fn owned by the fleet (stopped by Close) for the parts of
// the console that have work beside it.
func (f *Fleet) Background(fn func(ctx context.Context)) { f.goBG(fn) }

// EachHost calls fn for every host, in ID order, until ctx ends.
func (f *Fleet) EachHost(ctx context.Context, fn func(storage.Host)) {
	EachHost(ctx, f.store, fn)
}

// EachHost walks a store's hosts in pages of 500.
func EachHost(ctx context.Context, st *storage.Store, fn func(storage.Host)) {
	after := ""
	for ctx.Err() == nil {
		hosts, err := st.ListHosts(after, 500)
		if err != nil || len(hosts) == 0 {
			return
		}
		for _, h := range hosts {
			fn(h)
		}
		after = hosts[len(hosts)-1].ID
	}
}

// OutputHandler stores the output an index job streams (a chunk of
// nodes), once the fleet has checked the sender owns the job.
type OutputHandler func(host string, j storage.Job, payload []byte) error

// HandleOutput sets where index output goes (before the broker serves).
func (f *Fleet) HandleOutput(h OutputHandler) { f.output.Store(&h) }

// JobPrep completes a job request of any kind before newJob checks it
// (console/drills: a drill's proven host and the host it runs on). It may
// change req.HostID and h together, and returns the arguments to use.
type JobPrep func(req *JobRequest, h *storage.Host, args []byte) ([]byte, error)

// SetJobPrep sets the request's completion (before the broker serves).
func (f *Fleet) SetJobPrep(fn JobPrep) { f.prep.Store(&fn) }

type noInstruments struct{}

func (noInstruments) Ingested(string) {}
func (noInstruments) Rejected()       {}
func (noInstruments) Fire(string)     {}
