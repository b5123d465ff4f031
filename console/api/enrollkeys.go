package api

import (
	"fmt"
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/enrol"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/view"
)

// createEnrollKey makes a reusable enrolment key (admins: whoever holds it
// adds hosts to the fleet). The key and its install lines are in this
// answer only.
func (s *Server) createEnrollKey(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name             string            `json:"name"`
		Labels           map[string]string `json:"labels"`
		MaxUses          int               `json:"max_uses"`
		ExpiresIn        string            `json:"expires_in"`
		AllowAgentLabels *bool             `json:"allow_agent_labels"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	k, key, err := s.enrol.CreateEnrollKey(enrol.EnrollKeySpec{
		Name: req.Name, Labels: req.Labels, MaxUses: req.MaxUses, ExpiresIn: req.ExpiresIn, AllowAgentLabels: req.AllowAgentLabels,
	}, who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, struct {
		view.EnrollKey
		Key             string            `json:"key"`
		EnrollCommand   string            `json:"enroll_command"`
		InstallCommands map[string]string `json:"install_commands"`
	}{view.EnrollKeyOf(k, time.Now()), key, s.keyEnrollCommand(r, key), s.keyInstallCommands(r, key)})
}

// keyEnrollCommand is the line for a machine whose agent is installed.
func (s *Server) keyEnrollCommand(r *http.Request, key string) string {
	cmd := fmt.Sprintf("restic-manager-agent enroll --server %s --key %s", s.publicURL(r), key)
	if s.opts.CAFingerprint != "" {
		cmd += " --ca-fingerprint " + s.opts.CAFingerprint
	}
	return cmd
}

func (s *Server) listEnrollKeys(w http.ResponseWriter, r *http.Request) {
	keys, err := s.store.ListEnrollKeys()
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.EnrollKeysOf(keys, time.Now()))
}

// deleteEnrollKey ends an enrolment key; the hosts it made stay.
func (s *Server) deleteEnrollKey(w http.ResponseWriter, r *http.Request) {
	if err := s.enrol.DeleteEnrollKey(chi.URLParam(r, "id"), who(r).User); err != nil {
		s.fail(w, r, err)
		return
	}
	w.WriteHeader(http.StatusNoContent)
}
