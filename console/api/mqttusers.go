package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/httpx"
)

// mqttUserView is an integration account as listed: never its hashes.
type mqttUserView struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// listMQTTUsers lists the read-only MQTT accounts of integrations.
func (s *Server) listMQTTUsers(w http.ResponseWriter, r *http.Request) {
	users, err := s.store.ListIntegrationUsers()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	out := make([]mqttUserView, 0, len(users))
	for _, u := range users {
		out = append(out, mqttUserView{Name: u.Name, CreatedAt: u.CreatedAt})
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

// deleteMQTTUser removes an integration's MQTT account; it cannot log in
// from now on and its live connection is dropped.
func (s *Server) deleteMQTTUser(w http.ResponseWriter, r *http.Request) {
	if err := s.fleet.DeleteIntegrationUser(r.Context(), chi.URLParam(r, "name"), who(r).User); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
