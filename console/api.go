package console

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"
	"github.com/go-chi/httprate"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// maxBody bounds every request body the API reads.
const maxBody = 1 << 20

// Handler returns the console's HTTP handler. ready reports whether the
// broker and store are up (for /healthz).
func (c *Console) Handler(ready func() bool) http.Handler {
	r := c.router(ready)
	// Go's cross-origin protection refuses state-changing requests that a
	// browser marks as cross-site (Sec-Fetch-Site / Origin): CSRF protection
	// for every form and cookie-authenticated API call, with no token to leak.
	return http.NewCrossOriginProtection().Handler(r)
}

// apiRouter is the router itself, for tests that walk its routes.
func (c *Console) apiRouter() chi.Router { return c.router(nil) }

func (c *Console) router(ready func() bool) chi.Router {
	r := chi.NewRouter()
	r.Use(middleware.Recoverer)
	r.Use(securityHeaders)

	r.Get("/healthz", func(w http.ResponseWriter, _ *http.Request) {
		if ready != nil && !ready() {
			writeError(w, http.StatusServiceUnavailable, "starting")
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})

	// Prometheus scrapes without a session; the figures name hosts and
	// repositories but hold no secret.
	r.Handle("/metrics", c.metricsHandler())

	loginLimit := httprate.LimitBy(10, time.Minute, remoteIP)

	r.Route("/api/v1", func(r chi.Router) {
		r.With(loginLimit).Post("/login", c.apiLogin)
		r.Post("/logout", c.apiLogout)
		// Agents enrol with their one-time token, not a user login.
		enroll := r.With()
		if n := c.opts.EnrollPerMinute; n >= 0 {
			if n == 0 {
				n = 30
			}
			enroll = r.With(httprate.LimitBy(n, time.Minute, remoteIP))
		}
		enroll.Post("/enroll", c.apiEnroll)

		r.Group(func(r chi.Router) {
			r.Use(c.requireAuth(true))
			r.Use(c.audit)
			// Every role reads.
			r.Get("/hosts", c.apiListHosts)
			r.Get("/hosts/{id}", c.apiGetHost)
			r.Get("/hosts/{id}/schedules", c.apiGetSchedules)
			r.Get("/repos", c.apiListRepos)
			r.Get("/repos/{id}", c.apiGetRepo)
			r.Get("/repos/{id}/snapshots", c.apiRepoSnapshots)
			r.Get("/repos/{id}/snapshots/{sid}/ls", c.apiSnapshotLs)
			r.Get("/repos/{id}/snapshots/{sid}/index", c.apiSnapshotIndex)
			r.Get("/jobs", c.apiListJobs)
			r.Get("/jobs/{id}", c.apiGetJob)
			r.Get("/jobs/{id}/events", c.apiJobEvents)
			r.Get("/jobs/{id}/changes", c.apiJobChanges)
			r.Get("/alerts", c.apiListAlerts)
			r.Get("/tokens", c.apiListTokens)
			r.Post("/tokens", c.apiCreateToken)
			r.Delete("/tokens/{id}", c.apiDeleteToken)

			// Operators run the fleet.
			r.Group(func(r chi.Router) {
				r.Use(requireRole(RoleOperator))
				r.Post("/hosts", c.apiCreateHost)
				r.Post("/hosts/{id}/enroll-token", c.apiNewEnrollToken)
				r.Post("/hosts/{id}/jobs", c.apiCreateJob)
				r.Post("/jobs/{id}/cancel", c.apiCancelJob)
				r.Post("/restores", c.apiRestore)
				r.Put("/hosts/{id}/schedules", c.apiPutSchedules)
				r.Post("/repos", c.apiCreateRepo)
				r.Patch("/hosts/{id}", c.apiPatchHost)
				r.Post("/alerts/{id}/ack", c.apiAckAlert)
				r.Post("/alerts/{id}/silence", c.apiSilenceAlert)
			})

			// Admins manage access and the console itself.
			r.Group(func(r chi.Router) {
				r.Use(requireRole(RoleAdmin))
				r.Post("/hosts/{id}/revoke", c.apiRevokeHost)
				r.Delete("/hosts/{id}", c.apiDeleteHost)
				r.Get("/users", c.apiListUsers)
				r.Post("/users", c.apiCreateUser)
				r.Get("/audit", c.apiAudit)
				r.Post("/admin/backup", c.apiBackupStore)
				r.Get("/channels", c.apiListChannels)
				r.Post("/channels", c.apiCreateChannel)
				r.Post("/channels/{id}/test", c.apiTestChannel)
				r.Post("/mqtt-users", c.apiCreateMQTTUser)
				r.Get("/settings", c.apiGetSettings)
				r.Put("/settings", c.apiPutSettings)
			})
		})
	})
	c.mountUI(r, loginLimit)
	c.mountDownloads(r)
	return r
}

// remoteIP keys rate limits by the connecting address. The console is
// reached directly (no proxy headers are trusted), so RemoteAddr is the
// client; IPv6 clients are bucketed by /64.
func remoteIP(r *http.Request) (string, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return httprate.CanonicalizeIP(host), nil
}

func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

func writeError(w http.ResponseWriter, code int, msg string) {
	writeJSON(w, code, map[string]string{"error": msg})
}

// fail maps an error to its status: bad input 400, unknown 404, taken 409.
func (c *Console) fail(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, errBadRequest):
		writeError(w, http.StatusBadRequest, strings.TrimPrefix(err.Error(), errBadRequest.Error()+": "))
	case errors.Is(err, storage.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, storage.ErrNotFound):
		writeError(w, http.StatusNotFound, "not found")
	case errors.Is(err, storage.ErrExists):
		writeError(w, http.StatusConflict, "already exists")
	default:
		c.log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		writeError(w, http.StatusInternalServerError, "internal error")
	}
}

// decode reads a JSON body strictly: bounded, unknown fields refused.
func decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return badRequest("request body: %v", err)
	}
	return nil
}

// apiBackupStore streams an online backup of the store (Badger's backup
// format). The master key is not in it: keep that file separately.
func (c *Console) apiBackupStore(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="restic-manager-store.bak"`)
	w.Header().Set("Cache-Control", "no-store")
	p, _ := principalFrom(r.Context())
	if err := c.store.Backup(w); err != nil {
		c.log.Error("store backup failed", "error", err, "by", p.User)
		// Abort the response so the client sees a broken transfer, never a
		// short file that looks complete.
		panic(http.ErrAbortHandler)
	}
	c.log.Info("store backed up", "by", p.User, "remote", r.RemoteAddr)
}

// ---- login and tokens

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
}

func (c *Console) apiLogin(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	u, err := c.login(r, req.Username, req.Password)
	if errors.Is(err, errLocked) {
		writeError(w, http.StatusTooManyRequests, err.Error())
		return
	}
	if err != nil {
		writeError(w, http.StatusUnauthorized, "wrong username or password")
		return
	}
	if err := c.startSession(w, u.Name); err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]string{"user": u.Name, "role": u.Role})
}

func (c *Console) apiLogout(w http.ResponseWriter, r *http.Request) {
	c.endSession(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func (c *Console) apiCreateToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	if strings.TrimSpace(req.Name) == "" {
		c.fail(w, r, badRequest("name is required"))
		return
	}
	p, _ := principalFrom(r.Context())
	tok := "rmt_" + randomToken(32)
	t := storage.APIToken{ID: newID("tok"), Name: req.Name, User: p.User, CreatedAt: time.Now().UTC()}
	if err := c.store.PutAPIToken(sha(tok), t); err != nil {
		c.fail(w, r, err)
		return
	}
	// The token is shown this once; only its hash is kept.
	writeJSON(w, http.StatusCreated, map[string]string{"id": t.ID, "name": req.Name, "token": tok})
}

// apiListTokens lists the caller's tokens (every token for admins).
func (c *Console) apiListTokens(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	all, err := c.store.ListAPITokens()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	out := []storage.APIToken{}
	for _, t := range all {
		if t.User == p.User || p.Role == RoleAdmin {
			out = append(out, t)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Console) apiDeleteToken(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	id := chi.URLParam(r, "id")
	all, err := c.store.ListAPITokens()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	for _, t := range all {
		if t.ID == id && (t.User == p.User || p.Role == RoleAdmin) {
			if err := c.store.DeleteAPIToken(id); err != nil {
				c.fail(w, r, err)
				return
			}
			w.WriteHeader(http.StatusNoContent)
			return
		}
	}
	writeError(w, http.StatusNotFound, "not found")
}

// ---- users

func (c *Console) apiListUsers(w http.ResponseWriter, r *http.Request) {
	users, err := c.store.ListUsers()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	type userView struct {
		Name      string    `json:"name"`
		Role      string    `json:"role"`
		CreatedAt time.Time `json:"created_at"`
	}
	out := make([]userView, 0, len(users))
	for _, u := range users {
		out = append(out, userView{u.Name, u.Role, u.CreatedAt})
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Console) apiCreateUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	if _, ok := roleRank[req.Role]; !ok {
		c.fail(w, r, badRequest("role must be admin, operator or viewer"))
		return
	}
	if !validUserName(req.Name) {
		c.fail(w, r, badRequest("name: 1-64 letters, digits, '.', '-', '_' or '@'"))
		return
	}
	if len(req.Password) < 12 {
		c.fail(w, r, badRequest("password: at least 12 characters"))
		return
	}
	hash, err := hashPassword(req.Password)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.store.CreateUser(storage.User{Name: req.Name, PasswordHash: hash, Role: req.Role, CreatedAt: time.Now().UTC()}); err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"name": req.Name, "role": req.Role})
}

func validUserName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, ch := range s {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.ContainsRune(".-_@", ch)
		if !ok {
			return false
		}
	}
	return true
}

// ---- hosts and enrolment

// enrollTTL is how long a one-time enrolment token stays usable.
const enrollTTL = 24 * time.Hour

// hostView is a host as the API shows it: never its credential hash.
type hostView struct {
	ID            string              `json:"id"`
	Name          string              `json:"name"`
	Enrolled      bool                `json:"enrolled"`
	Online        bool                `json:"online"`
	OS            string              `json:"os,omitempty"`
	Arch          string              `json:"arch,omitempty"`
	Hostname      string              `json:"hostname,omitempty"`
	AgentVersion  string              `json:"agent_version,omitempty"`
	ResticVersion string              `json:"restic_version,omitempty"`
	LastSeen      *time.Time          `json:"last_seen"`
	CreatedAt     time.Time           `json:"created_at"`
	LastBackup    *storage.LastBackup `json:"last_backup"`
	LastJob       *storage.LastBackup `json:"last_job"`
	// Schedule state: desired version, what the agent applied, and whether
	// an online host is late applying it.
	ScheduleVersionDesired int64 `json:"schedule_version_desired"`
	ScheduleVersionApplied int64 `json:"schedule_version_applied"`
	SchedulePending        bool  `json:"schedule_pending"`
	// NextRun is the soonest run of the host's enabled schedules.
	NextRun *time.Time `json:"next_run"`
}

// viewHost adds the host's schedule state to its record.
func (c *Console) viewHost(h storage.Host) hostView {
	v := viewHost(h)
	hs, err := c.store.GetSchedules(h.ID)
	if err != nil {
		return v
	}
	v.ScheduleVersionDesired, v.ScheduleVersionApplied = hs.Version, hs.AppliedVersion
	v.SchedulePending = schedulePending(hs, h.Online, time.Now())
	now := time.Now()
	for _, s := range hs.Schedules {
		if !s.Enabled {
			continue
		}
		if runs, err := schedules.EntryNextRuns(h.ID, s.Entry(), now, 1); err == nil && len(runs) == 1 {
			if v.NextRun == nil || runs[0].Before(*v.NextRun) {
				t := runs[0]
				v.NextRun = &t
			}
		}
	}
	return v
}

func viewHost(h storage.Host) hostView {
	v := hostView{
		ID: h.ID, Name: h.Name, Enrolled: h.Enrolled, Online: h.Online, OS: h.OS, Arch: h.Arch, Hostname: h.Hostname,
		AgentVersion: h.AgentVersion, ResticVersion: h.ResticVersion, CreatedAt: h.CreatedAt,
		LastBackup: h.LastBackup, LastJob: h.LastJob,
	}
	if !h.LastSeen.IsZero() {
		t := h.LastSeen
		v.LastSeen = &t
	}
	return v
}

func (c *Console) apiCreateHost(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	name := strings.TrimSpace(req.Name)
	if name == "" || len(name) > 200 {
		c.fail(w, r, badRequest("name is required (at most 200 characters)"))
		return
	}
	now := time.Now().UTC()
	h := storage.Host{ID: newID("host"), Name: name, CreatedAt: now}
	if err := c.store.CreateHost(h); err != nil {
		c.fail(w, r, err)
		return
	}
	tok := "rme_" + randomToken(32)
	if err := c.store.PutEnrollToken(sha(tok), storage.EnrollToken{HostID: h.ID, CreatedAt: now, ExpiresAt: now.Add(enrollTTL)}); err != nil {
		c.fail(w, r, err)
		return
	}
	p, _ := principalFrom(r.Context())
	c.log.Info("host created", "host_id", h.ID, "name", name, "by", p.User)
	writeJSON(w, http.StatusCreated, map[string]any{
		"id": h.ID, "name": h.Name, "enroll_token": tok,
		"enroll_expires_at": now.Add(enrollTTL),
		"enroll_command":    c.enrollCommand(r, tok),
		"install_commands":  c.installCommands(r, tok),
	})
}

// enrollCommand is the line an operator runs on the new machine.
func (c *Console) enrollCommand(r *http.Request, token string) string {
	cmd := fmt.Sprintf("restic-manager-agent enroll --server %s --token %s", c.publicURL(r), token)
	if c.opts.CAFingerprint != "" {
		cmd += " --ca-fingerprint " + c.opts.CAFingerprint
	}
	return cmd
}

func (c *Console) apiEnroll(w http.ResponseWriter, r *http.Request) {
	var req wire.EnrollRequest
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	if !seal.ValidRecipient(req.PublicKey) {
		c.fail(w, r, badRequest("public_key is not an age X25519 recipient"))
		return
	}
	et, err := c.store.ConsumeEnrollToken(sha(req.Token), time.Now())
	if err != nil {
		c.log.Warn("enrolment refused: unknown, used or expired token", "remote", r.RemoteAddr)
		writeError(w, http.StatusUnauthorized, "the enrolment token is unknown, used or expired")
		return
	}
	password := randomToken(32)
	brokerHash, err := broker.MosquittoHash(password)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	h, err := c.store.UpdateHost(et.HostID, func(h *storage.Host) error {
		h.CredentialHash = sha(password)
		h.BrokerHash = brokerHash
		h.PublicKey = req.PublicKey
		h.Enrolled = true
		h.Hostname, h.OS, h.Arch = req.Hostname, req.OS, req.Arch
		return nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	// A re-enrolment replaces the credential: drop a session made with the old one.
	if d, ok := c.pub.(Disconnector); ok {
		d.Disconnect(h.ID)
	}
	// An external broker learns the new login before the agent tries it.
	if err := c.syncBrokerAccounts(r.Context()); err != nil {
		c.log.Error("enrolled host may not reach the external broker yet", "host_id", h.ID, "error", err)
	}
	c.record(storage.AuditEntry{Actor: "agent:" + h.ID, Kind: "agent", Action: "enroll", Target: h.ID, Remote: r.RemoteAddr, Status: http.StatusOK})
	c.log.Info("host enrolled", "host_id", h.ID, "hostname", req.Hostname, "remote", r.RemoteAddr)
	writeJSON(w, http.StatusOK, wire.EnrollResponse{
		HostID: h.ID, BrokerURL: c.brokerURL(r), Username: h.ID, Password: password,
		CAFingerprint: c.opts.CAFingerprint,
	})
}

// apiNewEnrollToken issues a fresh one-time token for a host: to enrol it
// again (a new machine, a lost config) or to rotate its credential. The old
// credential keeps working until the agent enrols with the new token.
func (c *Console) apiNewEnrollToken(w http.ResponseWriter, r *http.Request) {
	h, err := c.store.GetHost(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	now := time.Now().UTC()
	tok := "rme_" + randomToken(32)
	if err := c.store.PutEnrollToken(sha(tok), storage.EnrollToken{HostID: h.ID, CreatedAt: now, ExpiresAt: now.Add(enrollTTL)}); err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]any{
		"id": h.ID, "enroll_token": tok, "enroll_expires_at": now.Add(enrollTTL), "enroll_command": c.enrollCommand(r, tok),
	})
}

// apiRevokeHost removes a host's credential and drops its connection at
// once; it cannot reconnect until enrolled again with a new token.
func (c *Console) apiRevokeHost(w http.ResponseWriter, r *http.Request) {
	h, err := c.store.UpdateHost(chi.URLParam(r, "id"), func(h *storage.Host) error {
		h.CredentialHash = nil
		h.BrokerHash = ""
		h.Enrolled = false
		h.Online = false
		return nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if d, ok := c.pub.(Disconnector); ok {
		d.Disconnect(h.ID)
	}
	if err := c.syncBrokerAccounts(r.Context()); err != nil {
		c.log.Error("revoked host still in the external broker's accounts", "host_id", h.ID, "error", err)
	}
	p, _ := principalFrom(r.Context())
	c.log.Warn("host credential revoked", "host_id", h.ID, "by", p.User)
	writeJSON(w, http.StatusOK, c.viewHost(h))
}

func (c *Console) apiListHosts(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	hosts, err := c.store.ListHosts(r.URL.Query().Get("after"), limit)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	out := make([]hostView, 0, len(hosts))
	for _, h := range hosts {
		out = append(out, c.viewHost(h))
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Console) apiGetHost(w http.ResponseWriter, r *http.Request) {
	h, err := c.store.GetHost(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c.viewHost(h))
}

// ---- repositories

type repoView struct {
	ID          string              `json:"id"`
	Name        string              `json:"name"`
	URL         string              `json:"url"`
	CreatedAt   time.Time           `json:"created_at"`
	Health      *storage.RepoHealth `json:"health"`
	Maintenance *maintenanceView    `json:"maintenance,omitempty"`
}

type maintenanceView struct {
	URL    string `json:"url"`
	HostID string `json:"host_id"`
}

func viewRepo(rp storage.Repo) repoView {
	v := repoView{ID: rp.ID, Name: rp.Name, URL: rp.DisplayURL, CreatedAt: rp.CreatedAt, Health: rp.Health}
	if rp.MaintenanceHostID != "" {
		v.Maintenance = &maintenanceView{URL: rp.MaintenanceDisplay, HostID: rp.MaintenanceHostID}
	}
	return v
}

// redactURL removes any password from a repository URL (rest:https://u:p@…).
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return raw
	}
	u, err := url.Parse(rest)
	if err != nil || u.User == nil {
		return raw
	}
	return scheme + ":" + u.Redacted()
}

func (c *Console) apiCreateRepo(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name        string            `json:"name"`
		URL         string            `json:"url"`
		Password    string            `json:"password"`
		Env         map[string]string `json:"env"`
		Maintenance *struct {
			URL      string            `json:"url"`
			Password string            `json:"password"`
			Env      map[string]string `json:"env"`
			HostID   string            `json:"host_id"`
		} `json:"maintenance"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	req.Name, req.URL = strings.TrimSpace(req.Name), strings.TrimSpace(req.URL)
	repo := storage.Repo{ID: newID("repo"), Name: req.Name, DisplayURL: redactURL(req.URL), CreatedAt: time.Now().UTC()}
	secrets := storage.RepoSecrets{URL: req.URL, Password: req.Password, Env: req.Env}
	if m := req.Maintenance; m != nil {
		m.URL = strings.TrimSpace(m.URL)
		if m.URL == "" || strings.HasPrefix(m.URL, "-") || strings.ContainsAny(m.URL, "\x00\n\r") || m.HostID == "" {
			c.fail(w, r, badRequest("maintenance needs url and host_id"))
			return
		}
		if _, err := c.store.GetHost(m.HostID); err != nil {
			c.fail(w, r, badRequest("maintenance host %q does not exist", m.HostID))
			return
		}
		if m.Password == "" {
			m.Password = req.Password // the same repository key, another server
		}
		repo.MaintenanceHostID, repo.MaintenanceDisplay = m.HostID, redactURL(m.URL)
		secrets.Maintenance = &storage.RepoSecrets{URL: m.URL, Password: m.Password, Env: m.Env}
	}
	switch {
	case req.Name == "":
		c.fail(w, r, badRequest("name is required"))
		return
	case req.URL == "" || strings.HasPrefix(req.URL, "-") || strings.ContainsAny(req.URL, "\x00\n\r"):
		c.fail(w, r, badRequest("url is required and must not start with '-'"))
		return
	case req.Password == "":
		c.fail(w, r, badRequest("password is required"))
		return
	}
	rp, err := c.store.CreateRepo(repo, secrets)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, viewRepo(rp))
}

func (c *Console) apiListRepos(w http.ResponseWriter, r *http.Request) {
	repos, err := c.store.ListRepos()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	out := make([]repoView, 0, len(repos))
	for _, rp := range repos {
		out = append(out, viewRepo(rp))
	}
	writeJSON(w, http.StatusOK, out)
}

func (c *Console) apiGetRepo(w http.ResponseWriter, r *http.Request) {
	rp, err := c.store.GetRepo(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, viewRepo(rp))
}

// ---- jobs

func (c *Console) apiCreateJob(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Kind     string          `json:"kind"`
		RepoID   string          `json:"repo_id"`
		Args     json.RawMessage `json:"args"`
		TimeoutS int             `json:"timeout_s"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	p, _ := principalFrom(r.Context())
	j, err := c.createJob(chi.URLParam(r, "id"), req.RepoID, req.Kind, req.Args, "user", p.User, req.TimeoutS)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"job_id": j.ID})
}

// apiRestore starts a restore on any enrolled host: the original one or
// another. The repository's secrets are sealed to the target host's key.
func (c *Console) apiRestore(w http.ResponseWriter, r *http.Request) {
	var req struct {
		RepoID       string   `json:"repo_id"`
		SnapshotID   string   `json:"snapshot_id"`
		Include      []string `json:"include"`
		TargetHostID string   `json:"target_host_id"`
		TargetPath   string   `json:"target_path"`
		InPlace      bool     `json:"in_place"`
		Overwrite    string   `json:"overwrite"`
		Verify       bool     `json:"verify"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	args, _ := json.Marshal(wire.RestoreArgs{SnapshotID: req.SnapshotID, Include: req.Include, TargetPath: req.TargetPath,
		InPlace: req.InPlace, Overwrite: req.Overwrite, Verify: req.Verify})
	p, _ := principalFrom(r.Context())
	j, err := c.createJob(req.TargetHostID, req.RepoID, wire.JobRestore, args, "user", p.User, 0)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, map[string]string{"job_id": j.ID})
}

// apiJobChanges pages through a diff job's changed paths.
func (c *Console) apiJobChanges(w http.ResponseWriter, r *http.Request) {
	j, err := c.store.GetJob(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if j.Kind != wire.JobDiff {
		c.fail(w, r, badRequest("job %s is not a diff", j.ID))
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
	writeJSON(w, http.StatusOK, map[string]any{
		"status": j.Status, "statistics": out.Statistics, "total_changes": out.TotalChanges, "truncated": out.Truncated,
		"offset": offset, "limit": limit, "changes": page,
	})
}

// apiCancelJob stops a job: a queued one ends cancelled at once (and the
// agent is told to drop it if it arrives); a running one is interrupted by
// the agent, which removes restic's lock and reports "cancelled".
func (c *Console) apiCancelJob(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	id := chi.URLParam(r, "id")
	j, err := c.store.UpdateJob(id, func(j *storage.Job) error {
		if j.Status != storage.JobQueued {
			return errNoChange
		}
		j.Status = storage.JobCancelled
		j.EndedAt = time.Now().UTC()
		j.Error = "cancelled by " + p.User + " before it started"
		return nil
	})
	if errors.Is(err, errNoChange) {
		j, err = c.store.GetJob(id)
	} else if err == nil {
		c.events.publish(j)
		c.goBG(func(context.Context) { c.jobEnded(j) })
	}
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if !storage.TerminalStatus(j.Status) || j.Status == storage.JobCancelled && j.ExitCode == nil {
		b, err := wire.Encode(&wire.Command{JobID: j.ID, Kind: wire.JobCancel, IssuedAt: time.Now().UTC()})
		if err == nil {
			err = c.pub.Publish(wire.CommandsTopic(j.HostID), b, false, c.opts.CommandExpiry)
		}
		if err != nil {
			c.log.Error("cancel not sent", "job_id", j.ID, "error", err)
		}
	}
	c.log.Info("job cancel requested", "job_id", j.ID, "status", j.Status, "by", p.User)
	writeJSON(w, http.StatusOK, j)
}

func (c *Console) apiGetJob(w http.ResponseWriter, r *http.Request) {
	j, err := c.store.GetJob(chi.URLParam(r, "id"))
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, j)
}

func (c *Console) apiListJobs(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	jobs, next, err := c.store.ListJobs(storage.JobQuery{HostID: q.Get("host_id"), Status: q.Get("status"), Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if jobs == nil {
		jobs = []storage.Job{}
	}
	if next != "" {
		w.Header().Set("X-Next-Cursor", next)
	}
	writeJSON(w, http.StatusOK, jobs)
}

// apiJobEvents streams a job's updates as Server-Sent Events until it ends.
func (c *Console) apiJobEvents(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	fl, ok := w.(http.Flusher)
	if !ok {
		writeError(w, http.StatusInternalServerError, "streaming unsupported")
		return
	}
	updates, cancel := c.events.subscribe(id)
	defer cancel()
	j, err := c.store.GetJob(id)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	w.Header().Set("Content-Type", "text/event-stream")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	// An update queued between subscribe and the read above may be older
	// than what was read: never send a job state older than the last sent.
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
		b, _ := json.Marshal(j)
		fmt.Fprintf(w, "event: %s\ndata: %s\n\n", ev, b)
		fl.Flush()
		return ev == "result"
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
			fmt.Fprint(w, ": keepalive\n\n")
			fl.Flush()
		}
	}
}
