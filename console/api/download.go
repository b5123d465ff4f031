package api

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"path"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Downloads from snapshots (GET /repos/{id}/snapshots/{sid}/download): the
// console starts a dump job on an online host bound to the repository and
// waits for that agent to POST the bytes to /agent/dumps/{job} (see
// agent/dump.go); it then copies the agent's request body into the
// browser's response, 32 KiB at a time, and keeps nothing. TCP carries the
// back-pressure both ways: a browser that reads slowly blocks the copy,
// which stops reading the agent's body, whose POST then blocks, and with
// it restic. Closing the tab fails the copy: the agent's POST is cut, its
// restic stopped, and the job cancelled. docs/architecture.md says why
// HTTP and not MQTT.

const (
	// downloadStartWait bounds the wait for the agent's first bytes:
	// receiving the command and opening the repository take about a
	// second; a job held by the repository gate (a prune running) would
	// take longer than anyone waits with a spinning tab.
	downloadStartWait = time.Minute
	// uploadUnclaimed bounds how long an agent's POST waits for its
	// browser, who normally waits already.
	uploadUnclaimed = 10 * time.Second
	// downloadBuffer is the copy's one buffer: the console's memory for a
	// download, whatever its size.
	downloadBuffer = 32 << 10
)

// maxDumpsPerHost bounds the downloads one host streams at once: each is
// a restic reading and decrypting the repository on that machine, and
// ten open tabs must not become ten of them.
const maxDumpsPerHost = 4

// dumpRelay is where the browser's request and the agent's POST meet, by
// job ID; whichever comes first makes the slot. It also counts the
// downloads each host is streaming.
type dumpRelay struct {
	mu     sync.Mutex
	m      map[string]chan *dumpUpload
	active map[string]int
}

// take reserves one of host's download slots; release gives it back.
func (d *dumpRelay) take(host string) (release func(), ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.active == nil {
		d.active = map[string]int{}
	}
	if d.active[host] >= maxDumpsPerHost {
		return nil, false
	}
	d.active[host]++
	return func() {
		d.mu.Lock()
		defer d.mu.Unlock()
		if d.active[host]--; d.active[host] <= 0 {
			delete(d.active, host)
		}
	}, true
}

// dumpUpload is an agent's POST, handed to the browser's request.
type dumpUpload struct {
	body io.Reader
	// done receives the browser side's verdict when it has finished with
	// body: nil when all of it reached the browser.
	done chan error
}

func (d *dumpRelay) slot(jobID string) chan *dumpUpload {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]chan *dumpUpload{}
	}
	c, ok := d.m[jobID]
	if !ok {
		c = make(chan *dumpUpload, 1)
		d.m[jobID] = c
	}
	return c
}

func (d *dumpRelay) drop(jobID string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	delete(d.m, jobID)
}

// DownloadInfo is what a download of a path holds, from the snapshot's
// index: shown before it starts.
type DownloadInfo struct {
	Path     string `json:"path"`
	Type     string `json:"type"`    // file or dir
	Archive  string `json:"archive"` // "" (a file as is) or "tar.gz"
	Size     uint64 `json:"size"`    // the file's bytes, or the folder's files' (before compression)
	Files    int    `json:"files"`
	Filename string `json:"filename"`
	// HostID is the host a download would stream from now; Unavailable
	// says why none can (GET …/size only).
	HostID      string `json:"host_id,omitempty"`
	Unavailable string `json:"unavailable,omitempty"`
}

// downloadInfo describes path p of snapshot sid from its index.
func (s *Server) downloadInfo(repoID, sid, p string) (DownloadInfo, error) {
	meta, err := s.store.GetIndexMeta(repoID, sid)
	if errors.Is(err, storage.ErrNotFound) || err == nil && !meta.Complete {
		return DownloadInfo{}, input.Conflictf("snapshot %s is not indexed yet: an operator starts its index (POST /api/v1/repos/%s/snapshots/%s/index)", sid, repoID, sid)
	}
	if err != nil {
		return DownloadInfo{}, err
	}
	n, err := s.store.GetIndexNode(repoID, sid, p)
	if errors.Is(err, storage.ErrNotFound) {
		return DownloadInfo{}, fleet.Invalid("%s is not in snapshot %s", p, sid[:8])
	}
	if err != nil {
		return DownloadInfo{}, err
	}
	info := DownloadInfo{Path: p, Type: n.Type}
	switch n.Type {
	case "file":
		info.Size, info.Files, info.Filename = n.Size, 1, n.Name
	case "dir":
		if info.Files, info.Size, err = s.store.IndexTreeSize(repoID, sid, p); err != nil {
			return DownloadInfo{}, err
		}
		info.Archive, info.Filename = wire.DumpTarGz, n.Name+".tar.gz"
		if p == "/" {
			info.Filename = "snapshot-" + sid[:8] + ".tar.gz"
		}
	default:
		return DownloadInfo{}, fleet.Invalid("%s is a %s: only files and folders can be downloaded", p, n.Type)
	}
	return info, nil
}

// downloadPath reads the request's repository, snapshot and path.
func (s *Server) downloadPath(r *http.Request) (storage.Repo, string, string, error) {
	rp, err := s.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		return rp, "", "", err
	}
	sid, err := s.repos.ResolveSnapshot(rp.ID, chi.URLParam(r, "sid"))
	if err != nil {
		return rp, "", "", err
	}
	p := r.URL.Query().Get("path")
	if p == "" {
		return rp, "", "", fleet.Invalid("path is required (\"/\" for the whole snapshot)")
	}
	if err := wire.CheckTreePath(p); err != nil {
		return rp, "", "", fleet.Invalid("%v", err)
	}
	return rp, sid, path.Clean(p), nil
}

// snapshotDownloadInfo: GET /repos/{id}/snapshots/{sid}/size?path= →
// DownloadInfo (every role: it reads the index only).
func (s *Server) snapshotDownloadInfo(w http.ResponseWriter, r *http.Request) {
	rp, sid, p, err := s.downloadPath(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.downloadInfo(rp.ID, sid, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// Which host would stream it, or why none can: the page says so
	// before the browser starts a download that would fail.
	info.HostID, err = s.downloadHost(r, rp, r.URL.Query().Get("host_id"))
	if err != nil {
		msg, ok := input.AsConflict(err)
		if !ok {
			if msg, ok = input.As(err); !ok {
				s.fail(w, r, err)
				return
			}
		}
		info.Unavailable = msg
	}
	httpx.WriteJSON(w, http.StatusOK, info)
}

// downloadHost picks the host that streams a download: asked, or an
// online host bound to the repository (the one that last worked on it
// first). The repository's secrets reach only bound hosts.
func (s *Server) downloadHost(r *http.Request, rp storage.Repo, asked string) (string, error) {
	if asked != "" {
		if !s.fleet.MayReceive(rp.ID, asked) {
			return "", fleet.Invalid("host %s is not bound to repository %s", asked, rp.ID)
		}
		h, err := s.store.GetHost(asked)
		if err != nil {
			return "", err
		}
		if !h.Online {
			return "", input.Conflictf("host %s is offline: a download streams from an online host bound to the repository", asked)
		}
		return asked, nil
	}
	var online []string
	s.fleet.EachHost(r.Context(), func(h storage.Host) {
		if h.Online && h.Enrolled && s.fleet.MayReceive(rp.ID, h.ID) {
			online = append(online, h.ID)
		}
	})
	if len(online) == 0 {
		return "", input.Conflictf("no online host is bound to repository %s: a download streams from one", rp.ID)
	}
	if slices.Contains(online, rp.LastHostID) {
		return rp.LastHostID, nil
	}
	slices.Sort(online)
	return online[0], nil
}

// snapshotDownload: GET /repos/{id}/snapshots/{sid}/download?path=&host_id=
// (operator): a file as is, a folder as .tar.gz.
func (s *Server) snapshotDownload(w http.ResponseWriter, r *http.Request) {
	rp, sid, p, err := s.downloadPath(r)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	info, err := s.downloadInfo(rp.ID, sid, p)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hostID, err := s.downloadHost(r, rp, r.URL.Query().Get("host_id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	release, ok := s.dumps.take(hostID)
	if !ok {
		httpx.WriteError(w, http.StatusTooManyRequests, fmt.Sprintf("host %s is already streaming %d downloads: wait for one to end", hostID, maxDumpsPerHost))
		return
	}
	defer release()
	args, err := json.Marshal(wire.DumpArgs{SnapshotID: sid, Path: p, Archive: info.Archive, Size: info.Size})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	user := who(r).User
	j, err := s.fleet.CreateConsoleJob(fleet.JobRequest{HostID: hostID, RepoID: rp.ID, Kind: wire.JobDump, Args: args,
		ActorKind: "user", Actor: user})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	c := s.dumps.slot(j.ID)
	defer s.dumps.drop(j.ID)
	var sent int64
	outcome, status := "not started", http.StatusOK
	defer func() { s.auditDownload(r, j, info, sent, outcome, status) }()

	timer := time.NewTimer(downloadStartWait)
	defer timer.Stop()
	// A job that ends before sending (an agent without this feature, a
	// snapshot it cannot open) answers at once, not after the whole wait;
	// reading the job every 250 ms costs nothing next to restic's start.
	tick := time.NewTicker(250 * time.Millisecond)
	defer tick.Stop()
	var up *dumpUpload
	for up == nil {
		select {
		case up = <-c:
		case <-r.Context().Done():
			// 499: nginx's "client closed request"; nothing was answered.
			outcome, status = "closed by the browser before the host started sending", 499
			s.stopDownload(j.ID, user)
			return
		case <-timer.C:
			outcome, status = "the host did not start sending", http.StatusGatewayTimeout
			s.stopDownload(j.ID, user)
			httpx.WriteError(w, status, fmt.Sprintf("host %s did not start sending within %v (job %s)", hostID, downloadStartWait, j.ID))
			return
		case <-tick.C:
			if cur, err := s.store.GetJob(j.ID); err == nil && storage.TerminalStatus(cur.Status) {
				outcome, status = "the job ended before sending: "+cur.Status, http.StatusBadGateway
				httpx.WriteError(w, status, fmt.Sprintf("host %s could not start the download (job %s %s): %s", hostID, j.ID, cur.Status, cur.Error))
				return
			}
		}
	}

	h := w.Header()
	if info.Archive == wire.DumpTarGz {
		h.Set("Content-Type", "application/gzip")
	} else {
		h.Set("Content-Type", "application/octet-stream")
		// The browser shows progress, and a short stream is a failed
		// download rather than a short file.
		h.Set("Content-Length", strconv.FormatUint(info.Size, 10))
	}
	h.Set("Content-Disposition", mime.FormatMediaType("attachment", map[string]string{"filename": info.Filename}))
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Job-Id", j.ID)
	w.WriteHeader(http.StatusOK)

	var readErr, writeErr error
	sent, readErr, writeErr = relayCopy(w, up.body)
	switch {
	case writeErr != nil:
		outcome = "closed by the browser"
		up.done <- fmt.Errorf("the browser went away: %w", writeErr)
		s.stopDownload(j.ID, user)
	case readErr != nil:
		outcome = "the host's stream broke"
		up.done <- nil // the agent's side broke: it knows
		s.log.Warn("download cut: the agent's stream broke", "job_id", j.ID, "host_id", hostID, "bytes", sent, "error", readErr)
		// No final chunk: the browser must see a failed download, not a
		// short file that looks whole.
		panic(http.ErrAbortHandler)
	default:
		outcome = "complete"
		up.done <- nil
	}
}

// relayCopy copies the agent's body into the browser's response and tells
// which side failed.
func relayCopy(w io.Writer, body io.Reader) (n int64, readErr, writeErr error) {
	buf := make([]byte, downloadBuffer)
	for {
		m, err := body.Read(buf)
		if m > 0 {
			k, werr := w.Write(buf[:m])
			n += int64(k)
			if werr != nil {
				return n, nil, werr
			}
		}
		if err == io.EOF {
			return n, nil, nil
		}
		if err != nil {
			return n, err, nil
		}
	}
}

// stopDownload cancels a download's job: the agent stops restic.
func (s *Server) stopDownload(jobID, user string) {
	if _, err := s.fleet.CancelJob(jobID, user+" (download closed)"); err != nil {
		s.log.Warn("download's job not cancelled", "job_id", jobID, "error", err)
	}
}

// auditDownload records a download: a GET changes nothing, so the audit
// middleware skips it, but what left the backups, and to whom, is audited.
func (s *Server) auditDownload(r *http.Request, j storage.Job, info DownloadInfo, sent int64, outcome string, status int) {
	p := who(r)
	kind := "user"
	if !p.Session {
		kind = "token"
	}
	s.auth.Record(storage.AuditEntry{Actor: p.User, Kind: kind, Action: "GET /repos/{id}/snapshots/{sid}/download", Target: j.ID,
		Remote: r.RemoteAddr, Status: status,
		Detail: fmt.Sprintf("%s %s of snapshot %s in repository %s from host %s: %d bytes sent, %s", info.Type, info.Path, shortID(j.Args), j.RepoID, j.HostID, sent, outcome)})
}

// shortID is the 8-hex snapshot ID of a dump job's arguments.
func shortID(args json.RawMessage) string {
	var a wire.DumpArgs
	if json.Unmarshal(args, &a) != nil || len(a.SnapshotID) < 8 {
		return "?"
	}
	return a.SnapshotID[:8]
}

// agentDumpUpload: POST /agent/dumps/{job}, the agent's side of a download,
// authenticated with the agent's MQTT credential (HTTP Basic: host ID and
// password) over the TLS it pins. Only the host the dump job was sent to
// may send its bytes, only while the job runs, and only once.
func (s *Server) agentDumpUpload(w http.ResponseWriter, r *http.Request) {
	jobID := chi.URLParam(r, "job")
	host, password, ok := r.BasicAuth()
	if !ok || !s.enrol.AuthenticateHost(host, []byte(password)) {
		httpx.WriteError(w, http.StatusUnauthorized, "an agent's credential is required")
		return
	}
	j, err := s.store.GetJob(jobID)
	if err != nil || j.Kind != wire.JobDump || j.HostID != host {
		httpx.WriteError(w, http.StatusForbidden, "job "+jobID+" is not a download sent to this host")
		return
	}
	if storage.TerminalStatus(j.Status) {
		httpx.WriteError(w, http.StatusGone, "job "+jobID+" has ended ("+j.Status+")")
		return
	}
	rc := http.NewResponseController(w)
	up := &dumpUpload{body: &movingReader{r: r.Body, rc: rc}, done: make(chan error, 1)}
	c := s.dumps.slot(jobID)
	select {
	case c <- up:
	default:
		httpx.WriteError(w, http.StatusConflict, "job "+jobID+" is already sending")
		return
	}
	answer := func(err error) {
		_ = rc.SetWriteDeadline(time.Now().Add(10 * time.Second))
		if err != nil {
			httpx.WriteError(w, http.StatusGone, err.Error())
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}
	t := time.NewTimer(uploadUnclaimed)
	defer t.Stop()
	select {
	case err := <-up.done:
		answer(err)
		return
	case <-t.C:
	case <-r.Context().Done():
	}
	select {
	case <-c: // still unclaimed: take it back
		s.dumps.drop(jobID)
		answer(errors.New("no browser is waiting for download " + jobID))
	case err := <-up.done: // claimed meanwhile: the browser's copy ends it
		answer(err)
	}
}

// movingReader renews the read and write deadlines of the agent's POST at
// every read, for as long as bytes keep coming: the server's read timeout
// (a minute for a whole request) would cut any download past it.
type movingReader struct {
	r  io.Reader
	rc *http.ResponseController
}

func (m *movingReader) Read(p []byte) (int, error) {
	_ = m.rc.SetReadDeadline(time.Now().Add(streamIdle))
	_ = m.rc.SetWriteDeadline(time.Now().Add(streamIdle))
	return m.r.Read(p)
}
