package api

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/repos"
	"github.com/restic-manager/restic-manager/console/view"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func (s *Server) createRepo(w http.ResponseWriter, r *http.Request) {
	var req repos.RepoRequest
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rp, err := s.repos.CreateRepo(req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, view.RepoOf(rp))
}

func (s *Server) patchRepo(w http.ResponseWriter, r *http.Request) {
	var req repos.RepoChange
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	rp, err := s.repos.UpdateRepo(chi.URLParam(r, "id"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.RepoOf(rp))
}

func (s *Server) deleteRepo(w http.ResponseWriter, r *http.Request) {
	if err := s.repos.DeleteRepo(chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listRepos(w http.ResponseWriter, r *http.Request) {
	repos, err := s.store.ListRepos()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]view.Repo, 0, len(repos))
	for _, rp := range repos {
		out = append(out, view.RepoOf(rp))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) getRepo(w http.ResponseWriter, r *http.Request) {
	rp, err := s.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.RepoOf(rp))
}

// repoSnapshots serves the cached snapshot list, optionally for one host.
func (s *Server) repoSnapshots(w http.ResponseWriter, r *http.Request) {
	rp, err := s.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	raw, err := s.store.SnapshotCache(rp.ID)
	if errors.Is(err, storage.ErrNotFound) {
		raw = []byte("[]")
	} else if err != nil {
		s.fail(w, r, err)
		return
	}
	var snaps []map[string]any
	if err := json.Unmarshal(raw, &snaps); err != nil {
		s.fail(w, r, err)
		return
	}
	if hostID := r.URL.Query().Get("host_id"); hostID != "" {
		h, err := s.store.GetHost(hostID)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		kept := snaps[:0]
		for _, sn := range snaps {
			if sn["hostname"] == h.Hostname {
				kept = append(kept, sn)
			}
		}
		snaps = kept
	}
	if snaps == nil {
		snaps = []map[string]any{}
	}
	httpx.WriteJSON(w, http.StatusOK, snaps)
}

// snapshotLs lists one folder of a snapshot. The first request for a
// snapshot starts an index job (202 with its ID); once the index is
// complete, every folder comes from the store without running restic.
func (s *Server) snapshotLs(w http.ResponseWriter, r *http.Request) {
	rp, err := s.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sid, err := s.repos.ResolveSnapshot(rp.ID, chi.URLParam(r, "sid"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	dir := r.URL.Query().Get("path")
	if dir == "" {
		dir = "/"
	}
	if err := wire.CheckTreePath(dir); err != nil {
		s.fail(w, r, fleet.Invalid("%v", err))
		return
	}
	meta, err := s.store.GetIndexMeta(rp.ID, sid)
	if err == nil && meta.Complete {
		limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
		entries, next, err := s.store.ListIndexDir(rp.ID, sid, dir, r.URL.Query().Get("cursor"), limit)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		if next != "" {
			w.Header().Set("X-Next-Cursor", next)
		}
		httpx.WriteJSON(w, http.StatusOK, entries)
		return
	}
	if err != nil && !errors.Is(err, storage.ErrNotFound) {
		s.fail(w, r, err)
		return
	}
	// Reading never sends anything to a host: an operator starts the
	// index (POST …/index), and the folder can be read once it is complete.
	body := map[string]any{"error": "snapshot " + sid + " is not indexed yet: an operator starts its index (POST /api/v1/repos/" + rp.ID + "/snapshots/" + sid + "/index)", "indexed": false}
	if j, ok := s.repos.IndexJob(rp.ID, sid); ok {
		body["job_id"], body["status"], body["progress"] = j.ID, j.Status, j.Progress
	}
	httpx.WriteJSON(w, http.StatusConflict, body)
}

// startIndex starts (or returns the running) index job of a snapshot, on
// host_id or a host bound to the repository.
func (s *Server) startIndex(w http.ResponseWriter, r *http.Request) {
	var req struct {
		HostID string `json:"host_id"`
	}
	if r.ContentLength != 0 {
		if err := httpx.Decode(r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	rp, err := s.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	sid, err := s.repos.ResolveSnapshot(rp.ID, chi.URLParam(r, "sid"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	job, err := s.repos.StartIndex(rp, sid, req.HostID, who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, map[string]any{"indexing": true, "job_id": job.ID, "status": job.Status, "progress": job.Progress})
}

// snapshotIndex describes a snapshot's index: complete, nodes, bytes.
func (s *Server) snapshotIndex(w http.ResponseWriter, r *http.Request) {
	repoID := chi.URLParam(r, "id")
	sid, err := s.repos.ResolveSnapshot(repoID, chi.URLParam(r, "sid"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	m, err := s.store.GetIndexMeta(repoID, sid)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, m)
}

// rotateRepoPassword starts a key rotation (console/repos: RotatePassword).
func (s *Server) rotateRepoPassword(w http.ResponseWriter, r *http.Request) {
	var req repos.RotateRequest
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	j, err := s.repos.RotatePassword(chi.URLParam(r, "id"), req, "user", who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusAccepted, map[string]string{"job_id": j.ID, "host_id": j.HostID})
}

// connectionTestWait bounds how long POST /repos/{id}/test waits for its
// job: an offline or slow host answers with the job still queued or
// running, which the caller can follow.
const connectionTestWait = 45 * time.Second

// testRepo: POST /repos/{id}/test {host_id} → {ok, job_id, host_id, status,
// error, snapshots, duration_s}.
func (s *Server) testRepo(w http.ResponseWriter, r *http.Request) {
	var req struct {
		HostID string `json:"host_id"`
	}
	if r.ContentLength != 0 { // the body is optional
		if err := httpx.Decode(r, &req); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	ctx, cancel := context.WithTimeout(r.Context(), connectionTestWait)
	defer cancel()
	j, err := s.repos.TestConnection(ctx, chi.URLParam(r, "id"), req.HostID, "user", who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var snaps []json.RawMessage
	_ = json.Unmarshal(j.Output, &snaps)
	out := map[string]any{
		"ok": j.Status == storage.JobSucceeded, "job_id": j.ID, "host_id": j.HostID, "status": j.Status,
		"error": j.Error, "snapshots": len(snaps),
	}
	if !j.EndedAt.IsZero() && !j.StartedAt.IsZero() {
		out["duration_s"] = j.EndedAt.Sub(j.StartedAt).Seconds()
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// forgetPreview: POST /repos/{id}/forget-preview {host_id, retention, tags,
// hosts} → {ok, job_id, host_id, status, error, groups}: what a forget
// with this retention would keep and remove now (restic --dry-run).
func (s *Server) forgetPreview(w http.ResponseWriter, r *http.Request) {
	var req repos.PreviewRequest
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), connectionTestWait)
	defer cancel()
	j, err := s.repos.PreviewForget(ctx, chi.URLParam(r, "id"), req, "user", who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	var out struct {
		Groups json.RawMessage `json:"groups"`
	}
	_ = json.Unmarshal(j.Output, &out)
	if len(out.Groups) == 0 {
		out.Groups = json.RawMessage("[]")
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"ok": j.Status == storage.JobSucceeded, "job_id": j.ID, "host_id": j.HostID, "status": j.Status,
		"error": j.Error, "groups": out.Groups,
	})
}
