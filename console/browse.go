package console

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// ingestOutput stores a chunk of a snapshot index. Chunks are idempotent
// (the same nodes written again), so redelivery is harmless.
func (c *Console) ingestOutput(host, jobID string, payload []byte) error {
	ch, err := wire.DecodeIndexChunk(payload)
	if err != nil {
		return err
	}
	if ch.JobID != jobID {
		return fmt.Errorf("%w: chunk for %s on the topic of %s", broker.ErrRejected, ch.JobID, jobID)
	}
	j, err := c.jobOf(host, jobID)
	if err != nil {
		return err
	}
	var args wire.IndexArgs
	if j.Kind != wire.JobIndex || json.Unmarshal(j.Args, &args) != nil || args.SnapshotID != ch.SnapshotID {
		return fmt.Errorf("%w: output for job %s, which does not index snapshot %s", broker.ErrRejected, jobID, ch.SnapshotID)
	}
	nodes := make([]storage.IndexNode, len(ch.Nodes))
	for i, n := range ch.Nodes {
		nodes[i] = storage.IndexNode{Name: n.Name, Type: n.Type, Path: n.Path, Size: n.Size, Mtime: n.Mtime, Mode: n.Mode}
	}
	return c.store.PutIndexNodes(j.RepoID, ch.SnapshotID, nodes)
}

// indexEnded marks a snapshot's index complete (or forgets a failed one).
func (c *Console) indexEnded(j storage.Job) {
	var args wire.IndexArgs
	if json.Unmarshal(j.Args, &args) != nil {
		return
	}
	if j.Status != storage.JobSucceeded {
		_ = c.store.DropIndex(j.RepoID, args.SnapshotID)
		return
	}
	var out struct {
		Nodes int `json:"nodes"`
	}
	_ = json.Unmarshal(j.Output, &out)
	size, _ := c.store.IndexSize(j.RepoID, args.SnapshotID)
	if err := c.store.PutIndexMeta(storage.IndexMeta{RepoID: j.RepoID, SnapshotID: args.SnapshotID, JobID: j.ID, Complete: true,
		Nodes: out.Nodes, Bytes: size, IndexedIn: j.EndedAt.Sub(j.StartedAt).Seconds(), UpdatedAt: time.Now().UTC()}); err != nil {
		c.log.Error("index not marked complete", "job_id", j.ID, "error", err)
	}
}

// dropForgotten removes the indexes of the snapshots a forget removed.
func (c *Console) dropForgotten(j storage.Job) {
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
			if err := c.store.DropIndex(j.RepoID, id); err != nil {
				c.log.Warn("index of a forgotten snapshot not dropped", "snapshot_id", id, "error", err)
			}
		}
	}
	// Take them out of the cached list now, before the next health report.
	raw, err := c.store.SnapshotCache(j.RepoID)
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
		_ = c.store.PutSnapshotCache(j.RepoID, b)
	}
}

// resolveSnapshot turns a short or full ID into the full ID, from the cached
// snapshot list.
func (c *Console) resolveSnapshot(repoID, id string) (string, error) {
	if !validSnapshotRef(id) || id == "latest" {
		return "", badRequest("snapshot id %q is not 8-64 hex characters", id)
	}
	raw, err := c.store.SnapshotCache(repoID)
	if err != nil {
		if len(id) == 64 {
			return id, nil // no list yet: trust a full ID
		}
		return "", badRequest("snapshot %s is not known yet; use its full ID", id)
	}
	var snaps []struct {
		ID string `json:"id"`
	}
	_ = json.Unmarshal(raw, &snaps)
	found := ""
	for _, s := range snaps {
		if strings.HasPrefix(s.ID, id) {
			if found != "" {
				return "", badRequest("snapshot id %q is ambiguous", id)
			}
			found = s.ID
		}
	}
	if found == "" {
		return "", fmt.Errorf("snapshot %s: %w", id, storage.ErrNotFound)
	}
	return found, nil
}

// apiSnapshotLs lists one folder of a snapshot. The first request for a
// snapshot starts an index job (202 with its ID); once the index is
// complete, every folder comes from the store without running restic.
func (c *Console) apiSnapshotLs(w http.ResponseWriter, r *http.Request) {
	rp, err := c.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	sid, err := c.resolveSnapshot(rp.ID, chi.URLParam(r, "sid"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	dir := r.URL.Query().Get("path")
	if dir == "" {
		dir = "/"
	}
	if err := checkTreePath(dir); err != nil {
		c.fail(w, r, err)
		return
	}
	meta, err := c.store.GetIndexMeta(rp.ID, sid)
	if err == nil && meta.Complete {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		entries, next, err := c.store.ListIndexDir(rp.ID, sid, dir, r.URL.Query().Get("cursor"), limit)
		if err != nil {
			c.fail(w, r, err)
			return
		}
		if next != "" {
			w.Header().Set("X-Next-Cursor", next)
		}
		writeJSON(w, http.StatusOK, entries)
		return
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		c.fail(w, r, err)
		return
	}
	job, err := c.startIndex(r, rp, sid)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusAccepted, map[string]any{"indexing": true, "job_id": job.ID, "status": job.Status, "progress": job.Progress})
}

// startIndex returns the index job of a snapshot, starting one if none runs.
func (c *Console) startIndex(r *http.Request, rp storage.Repo, sid string) (storage.Job, error) {
	c.indexMu.Lock()
	defer c.indexMu.Unlock()
	key := rp.ID + "/" + sid
	if id, ok := c.indexing[key]; ok {
		if j, err := c.store.GetJob(id); err == nil && !storage.TerminalStatus(j.Status) {
			return j, nil
		}
	}
	host := r.URL.Query().Get("host_id")
	if host == "" {
		host = rp.LastHostID
	}
	if host == "" {
		return storage.Job{}, badRequest("no host has used repository %s yet; pass host_id", rp.ID)
	}
	args, _ := json.Marshal(wire.IndexArgs{SnapshotID: sid})
	p, _ := principalFrom(r.Context())
	j, _, err := c.newJob(jobRequest{HostID: host, RepoID: rp.ID, Kind: wire.JobIndex, Args: args, ActorKind: "user", Actor: p.User, TimeoutS: 6 * 3600})
	if err != nil {
		return storage.Job{}, err
	}
	c.indexing[key] = j.ID
	return j, nil
}

// apiSnapshotIndex describes a snapshot's index: complete, nodes, bytes.
func (c *Console) apiSnapshotIndex(w http.ResponseWriter, r *http.Request) {
	repoID := chi.URLParam(r, "id")
	sid, err := c.resolveSnapshot(repoID, chi.URLParam(r, "sid"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	m, err := c.store.GetIndexMeta(repoID, sid)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, m)
}
