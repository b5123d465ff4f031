package api

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/enrol"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/view"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func (s *Server) createHost(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	h, et, err := s.enrol.CreateHost(req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	s.log.Info("host created", "host_id", h.ID, "name", h.Name, "by", who(r).User)
	httpx.WriteJSON(w, http.StatusCreated, map[string]any{
		"id": h.ID, "name": h.Name, "enroll_token": et.Token,
		"enroll_expires_at": et.ExpiresAt,
		"enroll_command":    s.enrollCommand(r, et.Token),
		"install_commands":  s.installCommands(r, et.Token),
	})
}

// enrollCommand is the line an operator runs on the new machine.
func (s *Server) enrollCommand(r *http.Request, token string) string {
	cmd := fmt.Sprintf("restic-manager-agent enroll --server %s --token %s", s.publicURL(r), token)
	if s.opts.CAFingerprint != "" {
		cmd += " --ca-fingerprint " + s.opts.CAFingerprint
	}
	return cmd
}

func (s *Server) enroll(w http.ResponseWriter, r *http.Request) {
	var req wire.EnrollRequest
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	if err := req.Validate(); err != nil {
		// Refused before the token is spent: a fixed request can use it.
		s.fail(w, r, fleet.Invalid("%s", strings.TrimPrefix(err.Error(), wire.ErrInvalid.Error()+": ")))
		return
	}
	e, err := s.enrol.Enroll(r.Context(), req, r.RemoteAddr)
	switch {
	case errors.Is(err, enrol.ErrEnrollRefused):
		httpx.WriteError(w, http.StatusUnauthorized, err.Error())
		return
	case errors.Is(err, enrol.ErrAgentLabelsForbidden):
		httpx.WriteError(w, http.StatusForbidden, err.Error())
		return
	case err != nil:
		s.fail(w, r, err)
		return
	}
	h := e.Host
	audit := storage.AuditEntry{Actor: "agent:" + h.ID, Kind: "agent", Action: "enroll", Target: h.ID, Remote: r.RemoteAddr, Status: http.StatusOK}
	if e.KeyID != "" {
		// A host made by a key: the key is who let it in.
		audit.Detail = "enrolment key " + e.KeyID
	}
	s.auth.Record(audit)
	httpx.WriteJSON(w, http.StatusOK, wire.EnrollResponse{
		HostID: h.ID, BrokerURL: s.brokerURL(r), Username: h.ID, Password: e.Password,
		CAFingerprint: s.opts.CAFingerprint,
	})
}

// newEnrollToken issues a fresh one-time token for a host. A maintenance
// host's token is an admin's to issue: whoever enrols with it receives
// credentials that may delete.
func (s *Server) newEnrollToken(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if m, err := s.repos.IsMaintenanceHost(id); err != nil {
		s.fail(w, r, err)
		return
	} else if m && !who(r).Can(auth.RoleAdmin) {
		httpx.WriteError(w, http.StatusForbidden, "host "+id+" is a repository's maintenance host: only an admin issues its enrolment token")
		return
	}
	h, et, err := s.enrol.NewEnrollToken(id)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, map[string]any{
		"id": h.ID, "enroll_token": et.Token, "enroll_expires_at": et.ExpiresAt, "enroll_command": s.enrollCommand(r, et.Token),
	})
}

func (s *Server) revokeHost(w http.ResponseWriter, r *http.Request) {
	h, err := s.enrol.RevokeHost(r.Context(), chi.URLParam(r, "id"), who(r).User)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.HostOf(s.store, h))
}

// deleteHost removes a host: its credential stops working at once, its
// retained topics and Home Assistant entities are cleared, its job history
// stays.
func (s *Server) deleteHost(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := s.enrol.DeleteHost(r.Context(), id, who(r).User); err != nil {
		s.fail(w, r, err)
		return
	}
	s.alerts.HostDeleted(id)
	w.WriteHeader(http.StatusNoContent)
}

// listHosts answers a page of hosts in ID order, after the ID given;
// repeated ?label=key=value (or ?label=key: has the key) keeps the hosts
// that meet every condition, and the page is filled from further on.
func (s *Server) listHosts(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	if limit <= 0 || limit > 1000 {
		limit = 1000
	}
	filter, err := wire.ParseLabelFilter(q["label"])
	if err != nil {
		s.fail(w, r, fleet.Invalid("label filter: %s", err))
		return
	}
	out := make([]view.Host, 0, min(limit, 100))
	for after := q.Get("after"); ; {
		hosts, err := s.store.ListHosts(after, limit)
		if err != nil {
			s.fail(w, r, err)
			return
		}
		for _, h := range hosts {
			if filter.Matches(h.Labels) && len(out) < limit {
				out = append(out, view.HostOf(s.store, h))
			}
		}
		if len(hosts) < limit || len(out) >= limit {
			break
		}
		after = hosts[len(hosts)-1].ID
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) getHost(w http.ResponseWriter, r *http.Request) {
	h, err := s.store.GetHost(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.HostOf(s.store, h))
}

// hostDrills is the host's restore drill history, oldest first: what the
// host page's chart draws (rate and estimated full-restore time).
func (s *Server) hostDrills(w http.ResponseWriter, r *http.Request) {
	h, err := s.store.GetHost(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	pts, err := s.store.DrillHistory(h.ID)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]any{"host_id": h.ID, "last_drill": h.LastDrill, "drills": pts})
}

// patchHost renames a host, sets its staleness threshold or replaces its
// labels ({} clears them).
func (s *Server) patchHost(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name       *string           `json:"name"`
		StaleAfter *string           `json:"stale_after"`
		Labels     map[string]string `json:"labels"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	h, err := s.fleet.UpdateHost(chi.URLParam(r, "id"), fleet.HostChange{Name: req.Name, StaleAfter: req.StaleAfter, Labels: req.Labels})
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, view.HostOf(s.store, h))
}

// createMQTTUser makes a read-only MQTT account for an integration (Home
// Assistant, Node-RED): it may read status, health, alert and discovery
// topics, and publish nothing but Home Assistant's birth message.
func (s *Server) createMQTTUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	password, err := s.enrol.CreateIntegrationUser(r.Context(), req.Name)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusCreated, map[string]string{"name": req.Name, "password": password})
}

// publicURL is the console's own base URL as seen by the caller.
func (s *Server) publicURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return strings.TrimRight(s.opts.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// brokerURL is what an enrolling agent should connect to.
func (s *Server) brokerURL(r *http.Request) string {
	if s.opts.BrokerURL != "" {
		return s.opts.BrokerURL
	}
	host := r.Host
	if h, _, err := net.SplitHostPort(r.Host); err == nil {
		host = h
	}
	scheme := "mqtt"
	if s.opts.TLS {
		scheme = "mqtts"
	}
	return scheme + "://" + net.JoinHostPort(host, s.opts.MQTTPort)
}
