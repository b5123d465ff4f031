package api

import (
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/view"
	"github.com/restic-manager/restic-manager/storage"
)

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	// TOTPCode is a current code of the user's second factor, or one of
	// its recovery codes.
	TOTPCode string `json:"totp_code"`
}

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	var req loginRequest
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := s.auth.Login(r, req.Username, req.Password)
	if errors.Is(err, auth.ErrSecondFactorRequired) {
		if req.TOTPCode == "" {
			httpx.WriteJSON(w, http.StatusUnauthorized, map[string]any{"error": "this account has a second factor: give totp_code (a current code or a recovery code)", "second_factor": "totp"})
			return
		}
		u, err = s.auth.SecondFactor(r, u.Name, req.TOTPCode)
		if errors.Is(err, auth.ErrWrongCode) {
			httpx.WriteJSON(w, http.StatusUnauthorized, map[string]any{"error": "wrong or already used second factor code", "second_factor": "totp"})
			return
		}
	}
	if errors.Is(err, auth.ErrLocalLoginOff) {
		httpx.WriteError(w, http.StatusForbidden, err.Error())
		return
	}
	if errors.Is(err, auth.ErrLocked) {
		httpx.WriteError(w, http.StatusTooManyRequests, err.Error())
		return
	}
	if errors.Is(err, auth.ErrDisabled) {
		httpx.WriteError(w, http.StatusForbidden, err.Error())
		return
	}
	if err != nil {
		httpx.WriteError(w, http.StatusUnauthorized, "wrong username or password")
		return
	}
	if err := s.auth.StartSession(w, u.Name); err != nil {
		s.fail(w, r, err)
		return
	}
	out := map[string]any{"user": u.Name, "role": u.Role}
	if s.auth.MustEnrol(u) {
		out["second_factor_required"] = true
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request) {
	s.auth.EndSession(w, r)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) createToken(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name      string `json:"name"`
		ExpiresIn string `json:"expires_in"`
		Role      string `json:"role"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	t, tok, err := s.auth.CreateToken(who(r), auth.TokenRequest{Name: req.Name, ExpiresIn: req.ExpiresIn, Role: req.Role})
	if errors.Is(err, auth.ErrRoleTooHigh) {
		httpx.WriteError(w, http.StatusForbidden, err.Error())
		return
	}
	if err != nil {
		s.fail(w, r, err)
		return
	}
	// The token is shown this once; only its hash is kept.
	httpx.WriteJSON(w, http.StatusCreated, struct {
		ID        string    `json:"id"`
		Name      string    `json:"name"`
		Token     string    `json:"token"`
		Role      string    `json:"role"`
		ExpiresAt time.Time `json:"expires_at,omitzero"`
	}{t.ID, t.Name, tok, t.Role, t.ExpiresAt})
}

// listTokens lists the caller's tokens (every token for admins).
func (s *Server) listTokens(w http.ResponseWriter, r *http.Request) {
	toks, err := s.auth.Tokens(who(r))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	users, err := s.store.ListUsers()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.TokensOf(toks, users, time.Now()))
}

func (s *Server) deleteToken(w http.ResponseWriter, r *http.Request) {
	if err := s.auth.DeleteToken(who(r), chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.store.ListUsers()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]view.User, 0, len(users))
	for _, u := range users {
		out = append(out, view.UserOf(u))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name     string `json:"name"`
		Password string `json:"password"`
		Role     string `json:"role"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.auth.CreateUser(req.Name, req.Password, req.Role); err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, map[string]string{"name": req.Name, "role": req.Role})
}

// patchUser changes a user's role, password or disabled state; a new
// password, a changed role or disabling ends the user's sessions.
func (s *Server) patchUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Role     *string `json:"role"`
		Password *string `json:"password"`
		Disabled *bool   `json:"disabled"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	u, err := s.auth.UpdateUser(chi.URLParam(r, "name"), auth.UserChange{Role: req.Role, Password: req.Password, Disabled: req.Disabled})
	if err != nil {
		s.failUser(w, r, err)
		return
	}
	s.log.Info("user changed", "user", u.Name, "role", u.Role, "disabled", u.Disabled, "password", req.Password != nil, "by", who(r).User)
	httpx.WriteJSON(w, http.StatusOK, view.UserOf(u))
}

// deleteUser removes a user, its sessions and its tokens.
func (s *Server) deleteUser(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if err := s.auth.DeleteUser(name); err != nil {
		s.failUser(w, r, err)
		return
	}
	s.log.Info("user deleted", "user", name, "by", who(r).User)
	w.WriteHeader(http.StatusNoContent)
}

// failUser answers ErrLastAdmin with 409 and its reason.
func (s *Server) failUser(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, auth.ErrLastAdmin) {
		httpx.WriteError(w, http.StatusConflict, err.Error())
		return
	}
	s.fail(w, r, err)
}

func (s *Server) listAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	aq := storage.AuditQuery{Actor: q.Get("actor"), Target: q.Get("target"), Limit: limit, Cursor: q.Get("cursor")}
	for _, b := range []struct {
		name string
		t    *time.Time
	}{{"since", &aq.Since}, {"until", &aq.Until}} {
		if v := q.Get(b.name); v != "" {
			t, err := time.Parse(time.RFC3339Nano, v)
			if err != nil {
				httpx.WriteError(w, http.StatusBadRequest, b.name+": must be a time such as 2026-12-07T08:00:00Z")
				return
			}
			*b.t = t
		}
	}
	if !aq.Since.IsZero() && !aq.Until.IsZero() && aq.Until.Before(aq.Since) {
		httpx.WriteError(w, http.StatusBadRequest, "until: must not be before since")
		return
	}
	entries, next, err := s.store.ListAudit(aq)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if next != "" {
		w.Header().Set("X-Next-Cursor", next)
	}
	httpx.WriteJSON(w, http.StatusOK, entries)
}

// backupStore streams an online backup of the store (Badger's backup
// format). The master key is not in it: keep that file separately.
func (s *Server) backupStore(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("Content-Disposition", `attachment; filename="restic-manager-store.bak"`)
	w.Header().Set("Cache-Control", "no-store")
	p := who(r)
	if err := s.store.Backup(w); err != nil {
		s.log.Error("store backup failed", "error", err, "by", p.User)
		// Abort the response so the client sees a broken transfer, never a
		// short file that looks complete.
		panic(http.ErrAbortHandler)
	}
	s.log.Info("store backed up", "by", p.User, "remote", r.RemoteAddr)
}
