package repos

import (
	"encoding/json"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// ingestOutput stores a chunk of a snapshot index. Chunks are idempotent
// (the same nodes written again), so redelivery is harmless.
func (rs *Repos) ingestOutput(_ string, j storage.Job, payload []byte) error {
	jobID := j.ID
	ch, err := wire.DecodeIndexChunk(payload)
	if err != nil {
		return err
	}
	if ch.JobID != jobID {
		return fmt.Errorf("%w: chunk for %s on the topic of %s", broker.ErrRejected, ch.JobID, jobID)
	}
	var args wire.IndexArgs
	if j.Kind != wire.JobIndex || json.Unmarshal(j.Args, &args) != nil || args.SnapshotID != ch.SnapshotID {
		return fmt.Errorf("%w: output for job %s, which does not index snapshot %s", broker.ErrRejected, jobID, ch.SnapshotID)
	}
	if storage.TerminalStatus(j.Status) {
		return fmt.Errorf("%w: output for job %s, which has ended", broker.ErrRejected, jobID)
	}
	if n := rs.indexCount.add(jobID, len(ch.Nodes)); n > maxIndexNodes {
		return fmt.Errorf("%w: job %s sent more than %d index entries", broker.ErrRejected, jobID, maxIndexNodes)
	}
	nodes := make([]storage.IndexNode, len(ch.Nodes))
	for i, n := range ch.Nodes {
		nodes[i] = storage.IndexNode{Name: n.Name, Type: n.Type, Path: n.Path, Size: n.Size, Mtime: n.Mtime, Mode: n.Mode}
	}
	return rs.store.PutIndexNodes(j.RepoID, ch.SnapshotID, nodes)
}

// maxIndexNodes bounds what one index job may store: a snapshot of ten
// million files and folders, about 1 GiB of index in the store, is far past
// any real host's (200,000 nodes index to ~20 MiB), and an agent that sends
// more is refused, not trusted to fill the console's disk.
var maxIndexNodes = 10_000_000 // a variable for tests

// nodeCounts counts the index entries each index job sent.
type nodeCounts struct {
	mu sync.Mutex
	m  map[string]int
}

func (c *nodeCounts) add(job string, n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.m == nil {
		c.m = map[string]int{}
	}
	c.m[job] += n
	return c.m[job]
}

func (c *nodeCounts) drop(job string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	delete(c.m, job)
}

// indexEnded marks a snapshot's index complete (or forgets a failed one).
func (rs *Repos) indexEnded(j storage.Job) {
	rs.indexCount.drop(j.ID)
	var args wire.IndexArgs
	if json.Unmarshal(j.Args, &args) != nil {
		return
	}
	if j.Status != storage.JobSucceeded {
		_ = rs.store.DropIndex(j.RepoID, args.SnapshotID)
		return
	}
	var out struct {
		Nodes int `json:"nodes"`
	}
	_ = json.Unmarshal(j.Output, &out)
	size, _ := rs.store.IndexSize(j.RepoID, args.SnapshotID)
	if err := rs.store.PutIndexMeta(storage.IndexMeta{RepoID: j.RepoID, SnapshotID: args.SnapshotID, JobID: j.ID, Complete: true,
		Nodes: out.Nodes, Bytes: size, IndexedIn: j.EndedAt.Sub(j.StartedAt).Seconds(), UpdatedAt: time.Now().UTC()}); err != nil {
		rs.log.Error("index not marked complete", "job_id", j.ID, "error", err)
	}
}

// dropForgotten removes the indexes of the snapshots a forget removed.
func (rs *Repos) dropForgotten(j storage.Job) {
	var out struct {
		Groups []struct {
			Remove []string `json:"remove"`
		} `json:"groups"`
	}
	if json.Unmarshal(j.Output, &out) != nil {
		return
	}
	removed := map[string]bool{}
	for _, g := range out.Groups {
		for _, id := range g.Remove {
			removed[id] = true
			if err := rs.store.DropIndex(j.RepoID, id); err != nil {
				rs.log.Warn("index of a forgotten snapshot not dropped", "snapshot_id", id, "error", err)
			}
		}
	}
	// Take them out of the cached list now, before the next health report.
	raw, err := rs.store.SnapshotCache(j.RepoID)
	if err != nil || len(removed) == 0 {
		return
	}
	var snaps []json.RawMessage
	if json.Unmarshal(raw, &snaps) != nil {
		return
	}
	kept := snaps[:0]
	for _, s := range snaps {
		var id struct {
			ID string `json:"id"`
		}
		if json.Unmarshal(s, &id) == nil && removed[id.ID] {
			continue
		}
		kept = append(kept, s)
	}
	if b, err := json.Marshal(kept); err == nil {
		_ = rs.store.PutSnapshotCache(j.RepoID, b)
	}
}

// ResolveSnapshot turns a short or full ID into the full ID, from the cached
// snapshot list.
func (rs *Repos) ResolveSnapshot(repoID, id string) (string, error) {
	if !wire.ValidSnapshotRef(id) || id == "latest" {
		return "", fleet.Invalid("snapshot id %q is not 8-64 hex characters", id)
	}
	raw, err := rs.store.SnapshotCache(repoID)
	if err != nil {
		if len(id) == 64 {
			return id, nil // no list yet: trust a full ID
		}
		return "", fleet.Invalid("snapshot %s is not known yet; use its full ID", id)
	}
	var snaps []struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &snaps)
	found := ""
	for _, s := range snaps {
		if strings.HasPrefix(s.ID, id) {
			if found != "" {
				return "", fleet.Invalid("snapshot id %q is ambiguous", id)
			}
			found = s.ID
		}
	}
	if found == "" {
		return "", fmt.Errorf("snapshot %s: %w", id, storage.ErrNotFound)
	}
	return found, nil
}

// IndexJob returns the index job in flight for a snapshot, if any.
func (rs *Repos) IndexJob(repoID, sid string) (storage.Job, bool) {
	rs.indexMu.Lock()
	id, ok := rs.indexing[repoID+"/"+sid]
	rs.indexMu.Unlock()
	if !ok {
		return storage.Job{}, false
	}
	j, err := rs.store.GetJob(id)
	return j, err == nil
}

// StartIndex returns the index job of a snapshot, starting one on host
// (default: the host that last used the repository) if none runs.
func (rs *Repos) StartIndex(rp storage.Repo, sid, host, actor string) (storage.Job, error) {
	rs.indexMu.Lock()
	defer rs.indexMu.Unlock()
	key := rp.ID + "/" + sid
	if id, ok := rs.indexing[key]; ok {
		if j, err := rs.store.GetJob(id); err == nil && !storage.TerminalStatus(j.Status) {
			return j, nil
		}
	}
	if host == "" {
		host = rs.healthHost(rp.ID, "")
	}
	if host == "" {
		return storage.Job{}, fleet.Invalid("no host bound to repository %s is online to index it; pass host_id", rp.ID)
	}
	args, _ := json.Marshal(wire.IndexArgs{SnapshotID: sid})
	j, err := rs.fleet.CreateJob(fleet.JobRequest{HostID: host, RepoID: rp.ID, Kind: wire.JobIndex, Args: args, ActorKind: "user", Actor: actor, TimeoutS: 6 * 3600})
	if err != nil {
		return storage.Job{}, err
	}
	rs.indexing[key] = j.ID
	return j, nil
}
