package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/hooks"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/view"
	"github.com/restic-manager/restic-manager/schedules"
)

func (s *Server) putSchedules(w http.ResponseWriter, r *http.Request) {
	hostID := chi.URLParam(r, "id")
	var in []schedules.Schedule
	if err := httpx.Decode(r, &in); err != nil {
		s.fail(w, r, err)
		return
	}
	// A host's own backup schedule may name only the hooks and sources its
	// agent reports (a policy's may name any: its hosts enrol later).
	h, err := s.store.GetHost(hostID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	for _, sc := range in {
		if sc.PolicyID != "" {
			continue
		}
		if err := hooks.CheckSchedule(h, sc); err != nil {
			s.fail(w, r, err)
			return
		}
	}
	// An admin's schedules bind the host to their repositories; an
	// operator's may use only those it is bound to.
	hs, err := s.fleet.PutSchedules(hostID, in, who(r).Can(auth.RoleAdmin))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Debug("schedules changed", // audited; one per host in a rollout
		"host_id", hostID, "version", hs.Version, "count", len(hs.Schedules), "by", who(r).User)
	httpx.WriteJSON(w, http.StatusOK, view.SchedulesOf(hs, true))
}

func (s *Server) getSchedules(w http.ResponseWriter, r *http.Request) {
	hostID := chi.URLParam(r, "id")
	h, err := s.store.GetHost(hostID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	hs, err := s.store.GetSchedules(hostID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.SchedulesOf(hs, h.Online))
}
