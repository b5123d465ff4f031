package api

import (
	"net/http"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/view"
)

// listMQTTUsers lists the read-only MQTT accounts of integrations.
func (s *Server) listMQTTUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.store.ListIntegrationUsers()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.IntegrationUsersOf(users))
}

// deleteMQTTUser removes an integration's MQTT account; it cannot log in
// from now on and its live connection is dropped.
func (s *Server) deleteMQTTUser(w http.ResponseWriter, r *http.Request) {
	if err := s.enrol.DeleteIntegrationUser(r.Context(), chi.URLParam(r, "name"), who(r).User); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
