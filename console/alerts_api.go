package console

import (
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/notify"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func (c *Console) apiListAlerts(w http.ResponseWriter, r *http.Request) {
	alerts, err := c.store.ListAlerts(r.URL.Query().Get("all") != "")
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, alerts)
}

// apiAckAlert acknowledges a firing alert: it stays firing (and visible)
// but is not notified again until it resolves and fires anew.
func (c *Console) apiAckAlert(w http.ResponseWriter, r *http.Request) {
	p, _ := principalFrom(r.Context())
	a, err := c.store.UpdateAlert(chi.URLParam(r, "id"), func(a *storage.Alert, exists bool) error {
		if !exists {
			return storage.ErrNotFound
		}
		a.AckedBy, a.AckedAt = p.User, time.Now().UTC()
		return nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

// apiSilenceAlert mutes an alert's notifications for a while.
func (c *Console) apiSilenceAlert(w http.ResponseWriter, r *http.Request) {
	var req struct {
		For string `json:"for"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	d, err := time.ParseDuration(req.For)
	if err != nil || d <= 0 || d > 90*24*time.Hour {
		c.fail(w, r, badRequest("for must be a duration such as \"2h\" (at most 90 days)"))
		return
	}
	a, err := c.store.UpdateAlert(chi.URLParam(r, "id"), func(a *storage.Alert, exists bool) error {
		if !exists {
			return storage.ErrNotFound
		}
		a.SilencedUntil = time.Now().UTC().Add(d)
		return nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, a)
}

type channelRequest struct {
	Name        string        `json:"name"`
	Kind        string        `json:"kind"`
	Config      notify.Config `json:"config"`
	MinSeverity string        `json:"min_severity"`
}

// apiCreateChannel stores a notification channel; its configuration is
// sealed at rest and never shown again.
func (c *Console) apiCreateChannel(w http.ResponseWriter, r *http.Request) {
	var req channelRequest
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	req.Config.Kind = req.Kind
	if req.MinSeverity != "" {
		req.Config.MinSeverity = req.MinSeverity
	}
	if req.Config.MinSeverity == "" {
		req.Config.MinSeverity = "warning"
	}
	if strings.TrimSpace(req.Name) == "" {
		c.fail(w, r, badRequest("name is required"))
		return
	}
	if err := req.Config.Validate(); err != nil {
		c.fail(w, r, badRequest("%v", err))
		return
	}
	cfg, _ := json.Marshal(req.Config)
	ch, err := c.store.CreateChannel(storage.Channel{ID: newID("chan"), Name: req.Name, Kind: req.Kind, MinSeverity: req.Config.MinSeverity, CreatedAt: time.Now().UTC()}, cfg)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusCreated, ch)
}

func (c *Console) apiListChannels(w http.ResponseWriter, r *http.Request) {
	chans, err := c.store.ListChannels()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, chans)
}

// apiTestChannel sends a test message through one channel and reports the
// outcome at once.
func (c *Console) apiTestChannel(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	chans, err := c.store.ListChannels()
	if err != nil {
		c.fail(w, r, err)
		return
	}
	for _, ch := range chans {
		if ch.ID != id {
			continue
		}
		err := c.sendTo(r.Context(), ch, notify.Message{Event: "test", AlertID: "test", Rule: "test", Severity: notify.Info,
			Title: "restic-manager test notification", Text: "If you can read this, the channel " + ch.Name + " works.", Since: time.Now()})
		if err != nil {
			writeError(w, http.StatusBadGateway, "the test notification failed: "+err.Error())
			return
		}
		writeJSON(w, http.StatusOK, map[string]string{"status": "sent"})
		return
	}
	writeError(w, http.StatusNotFound, "not found")
}

// apiPatchHost renames a host or sets its staleness threshold.
func (c *Console) apiPatchHost(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name       *string `json:"name"`
		StaleAfter *string `json:"stale_after"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	var stale time.Duration
	if req.StaleAfter != nil && *req.StaleAfter != "" {
		d, err := time.ParseDuration(*req.StaleAfter)
		if err != nil || d < 0 {
			c.fail(w, r, badRequest("stale_after must be a duration such as \"26h\" (empty: derive it from the schedules)"))
			return
		}
		stale = d
	}
	h, err := c.store.UpdateHost(chi.URLParam(r, "id"), func(h *storage.Host) error {
		if req.Name != nil {
			n := strings.TrimSpace(*req.Name)
			if n == "" || len(n) > 200 {
				return badRequest("name must be 1-200 characters")
			}
			h.Name = n
		}
		if req.StaleAfter != nil {
			h.StaleAfter = stale
		}
		return nil
	})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	writeJSON(w, http.StatusOK, c.viewHost(h))
}

// apiCreateMQTTUser makes a read-only MQTT account for an integration (Home
// Assistant, Node-RED): it may read status, health, alert and discovery
// topics, and publish nothing but Home Assistant's birth message.
func (c *Console) apiCreateMQTTUser(w http.ResponseWriter, r *http.Request) {
	var req struct {
		Name string `json:"name"`
	}
	if err := decode(r, &req); err != nil {
		c.fail(w, r, err)
		return
	}
	if !validUserName(req.Name) || strings.HasPrefix(req.Name, "host-") || strings.ContainsAny(req.Name, ".@") {
		c.fail(w, r, badRequest("name: letters, digits, '-' and '_', not starting with \"host-\""))
		return
	}
	password := randomToken(24)
	brokerHash, err := broker.MosquittoHash(password)
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.store.PutIntegrationUser(storage.IntegrationUser{Name: req.Name, PasswordHash: sha(password), BrokerHash: brokerHash, CreatedAt: time.Now().UTC()}); err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.syncBrokerAccounts(r.Context()); err != nil {
		c.log.Error("new integration user may not reach the external broker yet", "user", req.Name, "error", err)
	}
	writeJSON(w, http.StatusCreated, map[string]string{"name": req.Name, "password": password})
}

// settings are console-wide switches.
type settings struct {
	HADiscovery bool `json:"ha_discovery"`
}

func (c *Console) loadSettings() settings {
	var s settings
	if err := c.store.GetSetting("console", &s); err != nil && !errors.Is(err, storage.ErrNotFound) {
		c.log.Warn("settings", "error", err)
	}
	return s
}

func (c *Console) apiGetSettings(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, c.loadSettings())
}

func (c *Console) apiPutSettings(w http.ResponseWriter, r *http.Request) {
	var s settings
	if err := decode(r, &s); err != nil {
		c.fail(w, r, err)
		return
	}
	if err := c.store.PutSetting("console", s); err != nil {
		c.fail(w, r, err)
		return
	}
	if s.HADiscovery {
		c.goBG(c.publishDiscovery)
	} else {
		c.goBG(c.removeDiscovery)
	}
	writeJSON(w, http.StatusOK, s)
}

// apiDeleteHost removes a host: its credential stops working at once, its
// retained topics and Home Assistant entities are cleared, its job history
// stays.
func (c *Console) apiDeleteHost(w http.ResponseWriter, r *http.Request) {
	id := chi.URLParam(r, "id")
	if err := c.store.DeleteHost(id); err != nil {
		c.fail(w, r, err)
		return
	}
	if d, ok := c.pub.(Disconnector); ok {
		d.Disconnect(id)
	}
	if err := c.syncBrokerAccounts(r.Context()); err != nil {
		c.log.Error("deleted host still in the external broker's accounts", "host_id", id, "error", err)
	}
	for _, topic := range []string{wire.StatusTopic(id), wire.HealthTopic(id), wire.SchedulesDesiredTopic(id), wire.SchedulesReportedTopic(id)} {
		_ = c.pub.Publish(topic, nil, true, 0)
	}
	for _, e := range haEntities {
		_ = c.pub.Publish(haConfigTopic(e, id), nil, true, 0)
	}
	p, _ := principalFrom(r.Context())
	c.log.Warn("host deleted", "host_id", id, "by", p.User)
	w.WriteHeader(http.StatusNoContent)
}
