package api

import (
	"errors"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/alerts"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/view"
	"github.com/restic-manager/restic-manager/storage"
)

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request) {
	list, err := s.store.ListAlerts(r.URL.Query().Get("all") != "")
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, list)
}

// ackAlert acknowledges a firing alert: it stays firing (and visible) but
// is not notified again until it resolves and fires anew.
func (s *Server) ackAlert(w http.ResponseWriter, r *http.Request) {
	a, err := s.alerts.Ack(chi.URLParam(r, "id"), who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, a)
}

// silenceAlert mutes an alert's notifications for a while.
func (s *Server) silenceAlert(w http.ResponseWriter, r *http.Request) {
	var req struct {
		For string `json:"for"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	d, err := time.ParseDuration(req.For)
	if err != nil {
		s.fail(w, r, fleet.Invalid("for must be a duration such as \"2h\" (at most 90 days)"))
		return
	}
	a, err := s.alerts.Silence(chi.URLParam(r, "id"), d)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, a)
}

// createChannel stores a notification channel; its configuration is sealed
// at rest and never shown again.
func (s *Server) createChannel(w http.ResponseWriter, r *http.Request) {
	var req alerts.ChannelRequest
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ch, err := s.alerts.CreateChannel(req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, ch)
}

func (s *Server) listChannels(w http.ResponseWriter, r *http.Request) {
	chans, err := s.store.ListChannels()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	deliveries, err := s.alerts.LastDeliveries()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.ChannelsOf(chans, deliveries))
}

// patchChannel renames a channel, changes its min_severity or replaces its
// configuration (secrets are never shown, so a new config gives them again).
func (s *Server) patchChannel(w http.ResponseWriter, r *http.Request) {
	var req alerts.ChannelChange
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	ch, err := s.alerts.UpdateChannel(chi.URLParam(r, "id"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, ch)
}

// deleteChannel removes a channel: nothing is sent through it any more.
func (s *Server) deleteChannel(w http.ResponseWriter, r *http.Request) {
	if err := s.alerts.DeleteChannel(chi.URLParam(r, "id")); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}

// testChannel sends a test message through one channel and reports the
// outcome at once.
func (s *Server) testChannel(w http.ResponseWriter, r *http.Request) {
	err := s.alerts.TestChannel(r.Context(), chi.URLParam(r, "id"))
	switch {
	case err == nil:
		httpx.WriteJSON(w, http.StatusOK, map[string]string{"status": "sent"})
	case isNotFound(err):
		httpx.WriteError(w, http.StatusNotFound, "not found")
	default:
		httpx.WriteError(w, http.StatusBadGateway, "the test notification failed: "+err.Error())
	}
}

func (s *Server) getSettings(w http.ResponseWriter, r *http.Request) {
	httpx.WriteJSON(w, http.StatusOK, s.alerts.Settings())
}

func (s *Server) putSettings(w http.ResponseWriter, r *http.Request) {
	var set alerts.Settings
	if err := httpx.Decode(r, &set); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := s.alerts.PutSettings(set); err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, set)
}

func isNotFound(err error) bool { return errors.Is(err, storage.ErrNotFound) }
