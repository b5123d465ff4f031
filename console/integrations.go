package console

import (
	"context"
	"crypto/subtle"
	"encoding/json"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

var _ broker.BirthListener = (*Console)(nil)

// AuthenticateIntegration checks a read-only MQTT account.
func (c *Console) AuthenticateIntegration(user string, password []byte) bool {
	if len(password) == 0 || !wire.ValidID(user) {
		return false
	}
	u, err := c.store.GetIntegrationUser(user)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(sha(string(password)), u.PasswordHash) == 1
}

// HomeAssistantOnline republishes discovery when Home Assistant (re)starts.
func (c *Console) HomeAssistantOnline() {
	c.goBG(c.publishDiscovery)
}

// haEntity is one Home Assistant discovery entity of a host.
type haEntity struct {
	component, object, name, template, deviceClass, unit string
}

var haEntities = []haEntity{
	{"sensor", "last_backup_age", "Last backup age", "{{ value_json.last_backup_age_s }}", "duration", "s"},
	{"sensor", "last_backup_status", "Last backup status", "{{ value_json.last_status }}", "", ""},
	{"sensor", "repository_size", "Repository size", "{{ value_json.repository_size_bytes }}", "data_size", "B"},
	{"binary_sensor", "problem", "Backup problem", "{{ 'ON' if value_json.status != 'ok' else 'OFF' }}", "problem", ""},
}

func haConfigTopic(e haEntity, hostID string) string {
	return "homeassistant/" + e.component + "/rm_" + hostID + "/" + e.object + "/config"
}

// haConfig is the retained discovery config of one entity.
func haConfig(e haEntity, h storage.Host) []byte {
	cfg := map[string]any{
		"name":                  e.name,
		"unique_id":             "rm_" + h.ID + "_" + e.object,
		"object_id":             "restic_manager_" + h.ID + "_" + e.object,
		"state_topic":           wire.HealthTopic(h.ID),
		"value_template":        e.template,
		"availability_topic":    wire.StatusTopic(h.ID),
		"availability_template": "{{ 'online' if value_json.online else 'offline' }}",
		"payload_available":     "online",
		"payload_not_available": "offline",
		"device": map[string]any{
			"identifiers":  []string{"rm_" + h.ID},
			"name":         h.Name,
			"manufacturer": "restic-manager",
			"model":        "restic-manager agent",
			"sw_version":   h.AgentVersion,
		},
	}
	if e.deviceClass != "" {
		cfg["device_class"] = e.deviceClass
	}
	if e.unit != "" {
		cfg["unit_of_measurement"] = e.unit
	}
	if e.component == "binary_sensor" {
		cfg["payload_on"], cfg["payload_off"] = "ON", "OFF"
	}
	b, _ := json.Marshal(cfg)
	return b
}

// publishDiscovery publishes the discovery configs of every host, retained,
// when the setting is on.
func (c *Console) publishDiscovery(ctx context.Context) {
	if !c.loadSettings().HADiscovery {
		return
	}
	c.eachHost(ctx, func(h storage.Host) {
		if !h.Enrolled {
			return
		}
		for _, e := range haEntities {
			if err := c.pub.Publish(haConfigTopic(e, h.ID), haConfig(e, h), true, 0); err != nil {
				c.log.Warn("discovery not published", "host_id", h.ID, "error", err)
			}
		}
		// The state topic must hold a value for the entities to show one.
		c.alertState.mu.Lock()
		delete(c.alertState.lastHealth, h.ID)
		c.alertState.mu.Unlock()
		c.publishHealth(h)
	})
}

// removeDiscovery clears the retained configs (an empty retained payload
// removes an entity from Home Assistant).
func (c *Console) removeDiscovery(ctx context.Context) {
	c.eachHost(ctx, func(h storage.Host) {
		for _, e := range haEntities {
			_ = c.pub.Publish(haConfigTopic(e, h.ID), nil, true, 0)
		}
	})
}

func (c *Console) eachHost(ctx context.Context, fn func(storage.Host)) {
	after := ""
	for ctx.Err() == nil {
		hosts, err := c.store.ListHosts(after, 500)
		if err != nil || len(hosts) == 0 {
			return
		}
		for _, h := range hosts {
			fn(h)
		}
		after = hosts[len(hosts)-1].ID
	}
}
