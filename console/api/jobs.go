package api

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/view"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

type jobRequest struct {
	Kind     string          `json:"kind"`
	RepoID   string          `json:"repo_id"`
	Args     json.RawMessage `json:"args"`
	TimeoutS int             `json:"timeout_s"`
}

func (s *Server) createJob(w http.ResponseWriter, r *http.Request) {
	var req jobRequest
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	j, err := s.fleet.CreateJob(fleet.JobRequest{HostID: chi.URLParam(r, "id"), RepoID: req.RepoID, Kind: req.Kind, Args: req.Args,
		ActorKind: "user", Actor: who(r).User, TimeoutS: req.TimeoutS})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, map[string]string{"job_id": j.ID})
}

// restore starts a restore on any enrolled host: the original one or
// another. The repository's secrets are sealed to the target host's key.
func (s *Server) restore(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RepoID       string   `json:"repo_id"`
		SnapshotID   string   `json:"snapshot_id"`
		Include      []string `json:"include"`
		TargetHostID string   `json:"target_host_id"`
		TargetPath   string   `json:"target_path"`
		InPlace      bool     `json:"in_place"`
		Overwrite    string   `json:"overwrite"`
		Verify       bool     `json:"verify"`
		// ToSource restores a source snapshot into that source's restore
		// command on the target host (a name its agent defines).
		ToSource string `json:"to_source"`
		// Bandwidth limits in KiB/s (0 none), checked by CreateJob.
		LimitUploadKiB   int `json:"limit_upload_kib"`
		LimitDownloadKiB int `json:"limit_download_kib"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	args, _ := json.Marshal(wire.RestoreArgs{SnapshotID: req.SnapshotID, Include: req.Include, TargetPath: req.TargetPath,
		InPlace: req.InPlace, Overwrite: req.Overwrite, Verify: req.Verify, ToSource: req.ToSource,
		LimitUploadKiB: req.LimitUploadKiB, LimitDownloadKiB: req.LimitDownloadKiB})
	j, err := s.fleet.CreateJob(fleet.JobRequest{HostID: req.TargetHostID, RepoID: req.RepoID, Kind: wire.JobRestore, Args: args,
		ActorKind: "user", Actor: who(r).User})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, map[string]string{"job_id": j.ID})
}

// approveJob lets a held forget run (see fleet.ApproveJob).
func (s *Server) approveJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.fleet.ApproveJob(chi.URLParam(r, "id"), who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.JobOf(j))
}

// cancelJob stops a job (see fleet.CancelJob).
func (s *Server) cancelJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.fleet.CancelJob(chi.URLParam(r, "id"), who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.JobOf(j))
}

// jobChanges pages through a diff job's changed paths.
func (s *Server) jobChanges(w http.ResponseWriter, r *http.Request) {
	j, err := s.store.GetJob(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if j.Kind != wire.JobDiff {
		s.fail(w, r, fleet.Invalid("job %s is not a diff", j.ID))
		return
	}
	var out struct {
		Changes      []json.RawMessage `json:"changes"`
		Statistics   json.RawMessage   `json:"statistics"`
		TotalChanges int               `json:"total_changes"`
		Truncated    bool              `json:"truncated"`
	}
	_ = json.Unmarshal(j.Output, &out)
	offset, _ := strconv.Atoi(r.URL.Query().Get("offset"))
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 100
	}
	offset = max(0, min(offset, len(out.Changes)))
	end := min(offset+limit, len(out.Changes))
	page := out.Changes[offset:end]
	if page == nil {
		page = []json.RawMessage{}
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{
		"status": j.Status, "statistics": out.Statistics, "total_changes": out.TotalChanges, "truncated": out.Truncated,
		"offset": offset, "limit": limit, "changes": page,
	})
}

func (s *Server) getJob(w http.ResponseWriter, r *http.Request) {
	j, err := s.store.GetJob(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	j = s.fleet.LiveJob(j) // progress not written yet
	httpx.WriteJSON(w, http.StatusOK, view.JobOf(j))
}

func (s *Server) listJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	jobs, next, err := s.store.ListJobs(storage.JobQuery{HostID: q.Get("host_id"), Status: q.Get("status"), Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if next != "" {
		w.Header().Set("X-Next-Cursor", next)
	}
	httpx.WriteJSON(w, http.StatusOK, view.Jobs(jobs))
}

// SSE streams: the defaults of Options.SSEPerUser and SSETotal, and how
// long one event may take to write. Each stream holds a connection, a
// goroutine and a subscription for as long as its job runs. A browser
// opens one per job page (and at most 6 connections to one origin over
// HTTP/1.1); scripts watching many jobs get 64. The total bounds what
// every user together can hold open.
const (
	DefaultSSEPerUser = 64
	DefaultSSETotal   = 1024
	sseWriteTimeout   = 30 * time.Second
)

// sseSlots counts the open event streams, per user and in all.
type sseSlots struct {
	perUser, total int

	mu    sync.Mutex
	n     int
	users map[string]int
}

// take reserves a stream for user; release gives it back.
func (l *sseSlots) take(user string) (release func(), ok bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.n >= l.total || l.users[user] >= l.perUser {
		return nil, false
	}
	l.n++
	l.users[user]++
	return func() {
		l.mu.Lock()
		defer l.mu.Unlock()
		l.n--
		if l.users[user]--; l.users[user] <= 0 {
			delete(l.users, user)
		}
	}, true
}

// jobEvents streams a job's updates as Server-Sent Events until it ends.
// The stream lives as long as the job, past the server's write timeout:
// the write deadline is set again before each event and keepalive, so a
// client that stops reading is cut off while a long job's watcher is not.
func (s *Server) jobEvents(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if _, ok := w.(http.Flusher); !ok {
		httpx.WriteError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	user := who(r).User
	release, ok := s.sse.take(user)
	if !ok {
		w.Header().Set("Retry-After", "10")
		httpx.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("too many event streams open (at most %d per user, %d in all): close some job pages", s.sse.perUser, s.sse.total))
		return
	}
	defer release()
	rc := http.NewResponseController(w)
	writeDeadline := func() { _ = rc.SetWriteDeadline(time.Now().Add(sseWriteTimeout)) }
	writeDeadline()
	updates, cancel := s.fleet.Subscribe(id)
	defer cancel()
	j, err := s.store.GetJob(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	j = s.fleet.LiveJob(j)
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// An update queued between subscribe and the read above may be older
	// than what was read: never send a job state older than the last sent.
	// send reports whether the stream is over (the job ended, or the
	// client does not take what is written).
	var lastSeq int64 = -1
	send := func(j storage.Job) bool {
		seq := int64(0)
		if j.Progress != nil {
			seq = j.Progress.Seq
		}
		if !storage.TerminalStatus(j.Status) && seq <= lastSeq {
			return false
		}
		lastSeq = seq
		ev := "progress"
		if storage.TerminalStatus(j.Status) {
			ev = "result"
		}
		b, _ := json.Marshal(view.JobOf(j))
		writeDeadline()
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev, b)
		return rc.Flush() != nil || ev == "result"
	}
	if send(j) {
		return
	}
	keepalive := time.NewTicker(20 * time.Second)
	defer keepalive.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case j := <-updates:
			if send(j) {
				return
			}
		case <-keepalive.C:
			writeDeadline()
			fmt.Fprint(w, ": keepalive\n\n")
			if rc.Flush() != nil {
				return
			}
		}
	}
}
