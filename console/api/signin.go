package api

import (
	"errors"
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/storage"
)

// me is who the caller is and the state of its second factor.
func (s *Server) me(w http.ResponseWriter, r *http.Request) {
	p := who(r)
	sf, err := s.auth.SecondFactorOf(p.User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"user": p.User, "role": p.Role, "session": p.Session,
		"second_factor": sf, "second_factor_required": p.MustEnrol})
}

// enrolTOTP starts the caller's second factor: the secret, its otpauth://
// URL and the recovery codes are in this answer only.
func (s *Server) enrolTOTP(w http.ResponseWriter, r *http.Request) {
	e, err := s.auth.EnrolTOTP(who(r))
	if err != nil {
		s.failSecondFactor(w, r, err)
		return
	}
	w.Header().Set("Cache-Control", "no-store")
	httpx.WriteJSON(w, http.StatusCreated, e)
}

func (s *Server) confirmTOTP(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Code string `json:"code"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.auth.ConfirmTOTP(r, who(r), req.Code); err != nil {
		s.failSecondFactor(w, r, err)
		return
	}
	sf, err := s.auth.SecondFactorOf(who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, sf)
}

// resetTOTP removes a user's second factor (an admin's, audited).
func (s *Server) resetTOTP(w http.ResponseWriter, r *http.Request) {
	name := chi.URLParam(r, "name")
	if err := s.auth.ResetSecondFactor(name); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			httpx.WriteError(w, http.StatusNotFound, "user "+name+" has no second factor")
			return
		}
		s.fail(w, r, err)
		return
	}
	auth.NoteAudit(r.Context(), "", "second factor of "+name+" reset")
	s.log.Warn("second factor reset", "user", name, "by", who(r).User)
	w.WriteHeader(http.StatusNoContent)
}

// signInSettings are the console-wide sign-in settings.
type signInSettings struct {
	SecondFactorRequired bool `json:"second_factor_required"`
}

func (s *Server) getSignInSettings(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, signInSettings{SecondFactorRequired: s.auth.SecondFactorRequired()})
}

func (s *Server) putSignInSettings(w http.ResponseWriter, r *http.Request) {
	var req struct {
		SecondFactorRequired *bool `json:"second_factor_required"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if req.SecondFactorRequired == nil {
		httpx.WriteError(w, http.StatusBadRequest, "give second_factor_required (true or false)")
		return
	}
	if err := s.auth.SetSecondFactorRequired(*req.SecondFactorRequired); err != nil {
		s.fail(w, r, err)
		return
	}
	detail := "second factor no longer required"
	if *req.SecondFactorRequired {
		detail = "second factor required for admins and operators"
	}
	auth.NoteAudit(r.Context(), "", detail)
	httpx.WriteJSON(w, http.StatusOK, signInSettings{SecondFactorRequired: s.auth.SecondFactorRequired()})
}

// failSecondFactor answers the second factor's errors with their status.
func (s *Server) failSecondFactor(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, auth.ErrTokenEnrol):
		httpx.WriteError(w, http.StatusForbidden, err.Error())
	case errors.Is(err, auth.ErrSecondFactorEnrolled):
		httpx.WriteError(w, http.StatusConflict, err.Error())
	case errors.Is(err, auth.ErrNoEnrolment):
		httpx.WriteError(w, http.StatusConflict, err.Error())
	case errors.Is(err, auth.ErrWrongCode):
		httpx.WriteError(w, http.StatusBadRequest, "wrong or already used code: give the current code from the app")
	case errors.Is(err, auth.ErrLocked):
		httpx.WriteError(w, http.StatusTooManyRequests, err.Error())
	default:
		s.fail(w, r, err)
	}
}
