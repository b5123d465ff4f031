package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

var _ broker.BirthListener = (*Alerts)(nil)

// haBirthInterval: Home Assistant's birth messages cause at most one full
// republish of the discovery configs per interval. Each republish walks
// every host and publishes four retained configs and a health message per
// host, and any integration account may publish the birth message. A
// birth within the interval needs nothing more: the configs are retained,
// so a Home Assistant that (re)subscribes gets them from the broker.
const haBirthInterval = 30 * time.Second

// haBirths coalesces Home Assistant's birth messages.
type haBirths struct {
	mu   sync.Mutex
	last time.Time        // when the last republish began
	now  func() time.Time // time.Now; tests set it
}

// due reports whether a birth now starts a republish, and if so marks it.
func (b *haBirths) due() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	if b.now != nil {
		now = b.now()
	}
	if !b.last.IsZero() && now.Sub(b.last) < haBirthInterval && !now.Before(b.last) {
		return false
	}
	b.last = now
	return true
}

// HomeAssistantOnline republishes discovery when Home Assistant (re)starts,
// at most once per haBirthInterval however many births arrive.
func (al *Alerts) HomeAssistantOnline() {
	if !al.births.due() {
		return
	}
	al.goBG(al.publishDiscovery)
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
func (al *Alerts) publishDiscovery(ctx context.Context) {
	if !al.Settings().HADiscovery {
		return
	}
	al.f.EachHost(ctx, func(h storage.Host) {
		if !h.Enrolled {
			return
		}
		for _, e := range haEntities {
			if err := al.pub.Publish(haConfigTopic(e, h.ID), haConfig(e, h), true, 0); err != nil {
				al.log.Warn("discovery not published", "host_id", h.ID, "error", err)
			}
		}
		// The state topic must hold a value for the entities to show one.
		al.state.mu.Lock()
		delete(al.state.lastHealth, h.ID)
		al.state.mu.Unlock()
		al.publishHealth(h)
	})
}

// removeDiscovery clears the retained configs (an empty retained payload
// removes an entity from Home Assistant).
func (al *Alerts) removeDiscovery(ctx context.Context) {
	al.f.EachHost(ctx, func(h storage.Host) {
		for _, e := range haEntities {
			_ = al.pub.Publish(haConfigTopic(e, h.ID), nil, true, 0)
		}
	})
}

// HostDeleted clears a deleted host's Home Assistant entities.
func (al *Alerts) HostDeleted(hostID string) {
	for _, e := range haEntities {
		_ = al.pub.Publish(haConfigTopic(e, hostID), nil, true, 0)
	}
}

// Settings are console-wide switches.
type Settings struct {
	HADiscovery bool `json:"ha_discovery"`
}

// Settings reads the console's switches.
func (al *Alerts) Settings() Settings {
	var s Settings
	if err := al.store.GetSetting("console", &s); err != nil && !errors.Is(err, storage.ErrNotFound) {
		al.log.Warn("settings", "error", err)
	}
	return s
}

// PutSettings stores the switches and publishes or removes the discovery
// configs accordingly.
func (al *Alerts) PutSettings(s Settings) error {
	if err := al.store.PutSetting("console", s); err != nil {
		return err
	}
	if s.HADiscovery {
		al.goBG(al.publishDiscovery)
	} else {
		al.goBG(al.removeDiscovery)
	}
	return nil
}
