package fleet

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Bulk runs: one request makes the same job on many hosts (a label
// selector's, or a list). Each job is made by CreateJob, exactly as if it
// had been asked for alone: validation, routing of destructive work to
// the maintenance host, the binding check and the repository gate all
// apply per host. What is checked once, before anything is made, is what
// does not depend on the host (kind, repository, arguments, timeout), so
// an invalid request makes no job at all.

// MaxBulkHosts bounds one bulk run. Jobs are made at about 1-2 ms each
// with bulkWorkers on two cores (a store commit, sealing the repository
// to the host's key, a publish): 5,000 hosts take some seconds, well
// inside the HTTP server's write timeout. Larger fleets run in parts (by
// label), which also keeps one mistaken click from reaching everything.
const MaxBulkHosts = 5000

// bulkWorkers make the jobs of a bulk run side by side: a commit waits for
// the store's group sync, which concurrent commits share (one worker: ~1.9
// ms per job; eight: ~1.2 ms). Each host gets one job of the run, so the
// order between workers changes nothing an agent sees.
const bulkWorkers = 8

// BulkResult is what a bulk run made: the jobs, in the order of the hosts
// asked for, and the hosts refused, each with the reason.
type BulkResult struct {
	JobIDs  []string
	Refused []Refusal
}

// Refusal is a host a bulk run made no job for, and why (a message for
// the person who asked).
type Refusal struct {
	HostID, Error string
}

// CreateJobs makes req's job on each of hostIDs (req.HostID is ignored).
// An invalid request (kind, repository, arguments, timeout, no hosts, more
// than MaxBulkHosts) is an input error and makes nothing; past that, a
// host whose job cannot be made (not enrolled, not bound to the
// repository, unknown) is refused alone, with the reason. A host named
// twice gets one job.
func (f *Fleet) CreateJobs(req JobRequest, hostIDs []string) (BulkResult, error) {
	hosts, err := bulkHosts(hostIDs)
	if err != nil {
		return BulkResult{}, err
	}
	if err := f.checkBulk(req); err != nil {
		return BulkResult{}, err
	}
	start := time.Now()
	type outcome struct {
		jobID string
		err   error
	}
	out := make([]outcome, len(hosts))
	work := make(chan int)
	var wg sync.WaitGroup
	for range min(bulkWorkers, len(hosts)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range work {
				r := req
				r.HostID = hosts[i]
				j, err := f.CreateJob(r)
				out[i] = outcome{j.ID, err}
			}
		}()
	}
	for i := range hosts {
		work <- i
	}
	close(work)
	wg.Wait()

	res := BulkResult{JobIDs: []string{}, Refused: []Refusal{}}
	for i, o := range out {
		if o.err == nil {
			res.JobIDs = append(res.JobIDs, o.jobID)
			continue
		}
		res.Refused = append(res.Refused, Refusal{HostID: hosts[i], Error: f.refusal(hosts[i], o.err)})
	}
	// One line per run, not per job: the job records name the actor.
	f.log.Info("bulk run", "kind", req.Kind, "repo_id", req.RepoID, "actor_kind", req.ActorKind, "actor", req.Actor,
		"hosts", len(hosts), "jobs", len(res.JobIDs), "refused", len(res.Refused), "took", time.Since(start).Round(time.Millisecond))
	return res, nil
}

// bulkHosts checks the list of hosts of a bulk run and drops repeats.
func bulkHosts(hostIDs []string) ([]string, error) {
	seen := make(map[string]bool, len(hostIDs))
	hosts := make([]string, 0, len(hostIDs))
	for i, id := range hostIDs {
		if strings.TrimSpace(id) == "" {
			return nil, Invalid("host_ids[%d] is empty", i)
		}
		if !seen[id] {
			seen[id] = true
			hosts = append(hosts, id)
		}
	}
	switch {
	case len(hosts) == 0:
		return nil, Invalid("no host to run the job on")
	case len(hosts) > MaxBulkHosts:
		return nil, Invalid("%d hosts: one bulk run takes at most %d; narrow the selection (by label) and run it in parts", len(hosts), MaxBulkHosts)
	}
	return hosts, nil
}

// checkBulk refuses a request that no host could run, with the message
// newJob would give for each: the kind, the repository, the arguments and
// the timeout do not depend on the host.
func (f *Fleet) checkBulk(req JobRequest) error {
	if kind, ok := wire.LookupKind(req.Kind); !ok || !kind.Operator {
		return Invalid("job kind %q is not one of %s", req.Kind,
			strings.Join(wire.KindNames(func(k wire.KindInfo) bool { return k.Operator }), ", "))
	}
	if _, err := f.store.GetRepo(req.RepoID); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return Invalid("repository %q does not exist", req.RepoID)
		}
		return err
	}
	if _, err := wire.NormalizeArgs(req.Kind, req.Args); err != nil {
		return argsInput(err)
	}
	if req.TimeoutS < 0 {
		return Invalid("timeout_s must not be negative")
	}
	return nil
}

// refusal is the caller's reason a host got no job. An error that is not
// the caller's (the store failing) is logged and not shown.
func (f *Fleet) refusal(hostID string, err error) string {
	if msg, ok := input.As(err); ok {
		return msg
	}
	switch {
	case errors.Is(err, storage.ErrNotFound):
		return fmt.Sprintf("host %s does not exist", hostID)
	case errors.Is(err, storage.ErrInvalid):
		return fmt.Sprintf("host id %q is not valid", hostID)
	}
	f.log.Error("bulk run: job not made", "host_id", hostID, "error", err)
	return "internal error (see the console's log)"
}
