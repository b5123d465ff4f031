package alerts

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/notify"
	"github.com/restic-manager/restic-manager/storage"
)

// ChannelRequest is a notification channel to create.
type ChannelRequest struct {
	Name        string        `json:"name"`
	Kind        string        `json:"kind"`
	Config      notify.Config `json:"config"`
	MinSeverity string        `json:"min_severity"`
}

// CreateChannel stores a notification channel; its configuration is sealed
// at rest and never shown again.
func (al *Alerts) CreateChannel(req ChannelRequest) (storage.Channel, error) {
	req.Config.Kind = req.Kind
	if req.MinSeverity != "" {
		req.Config.MinSeverity = req.MinSeverity
	}
	if req.Config.MinSeverity == "" {
		req.Config.MinSeverity = fleet.SeverityWarning
	}
	name, err := channelName(req.Name)
	if err != nil {
		return storage.Channel{}, err
	}
	if err := req.Config.Validate(); err != nil {
		return storage.Channel{}, input.Errorf("%v", err)
	}
	cfg, _ := json.Marshal(req.Config)
	return al.store.CreateChannel(storage.Channel{ID: token.NewID("chan"), Name: name, Kind: req.Kind,
		MinSeverity: req.Config.MinSeverity, CreatedAt: time.Now().UTC()}, cfg)
}

// maxChannelName bounds a channel's name (it goes into messages and logs).
const maxChannelName = 200

func channelName(s string) (string, error) {
	s = strings.TrimSpace(s)
	if s == "" || len(s) > maxChannelName {
		return "", input.Errorf("name is required (at most %d characters)", maxChannelName)
	}
	return s, nil
}

// ChannelChange is a partial update of a channel; nil fields stay as they
// are. Config replaces the whole configuration (secrets included: they are
// never shown, so a change must give them again); the kind stays.
type ChannelChange struct {
	Name        *string        `json:"name"`
	MinSeverity *string        `json:"min_severity"`
	Config      *notify.Config `json:"config"`
}

// UpdateChannel renames a channel, changes its routing or replaces its
// configuration.
func (al *Alerts) UpdateChannel(id string, c ChannelChange) (storage.Channel, error) {
	var name string
	if c.Name != nil {
		var err error
		if name, err = channelName(*c.Name); err != nil {
			return storage.Channel{}, err
		}
	}
	return al.store.UpdateChannel(id, func(ch *storage.Channel, raw []byte) ([]byte, error) {
		var cfg notify.Config
		if err := json.Unmarshal(raw, &cfg); err != nil {
			return nil, err
		}
		if c.Config != nil {
			if c.Config.Kind != "" && c.Config.Kind != ch.Kind {
				return nil, input.Errorf("config: the kind cannot change (delete the channel and create a %s one)", c.Config.Kind)
			}
			next := *c.Config
			next.Kind = ch.Kind
			if next.MinSeverity == "" {
				next.MinSeverity = cfg.MinSeverity
			}
			cfg = next
		}
		if c.MinSeverity != nil {
			cfg.MinSeverity = *c.MinSeverity
		}
		if cfg.MinSeverity == "" {
			cfg.MinSeverity = fleet.SeverityWarning
		}
		if err := cfg.Validate(); err != nil {
			return nil, input.Errorf("%v", err)
		}
		if c.Name != nil {
			ch.Name = name
		}
		ch.MinSeverity = cfg.MinSeverity
		return json.Marshal(cfg)
	})
}

// DeleteChannel removes a notification channel; nothing is sent through it
// from then on.
func (al *Alerts) DeleteChannel(id string) error {
	if err := al.store.DeleteChannel(id); err != nil {
		return err
	}
	return al.store.DeleteChannelDelivery(id)
}

// recordDelivery keeps the outcome of a send through a channel as its last
// delivery, which the integrations page shows.
func (al *Alerts) recordDelivery(id, event string, err error) {
	d := storage.ChannelDelivery{At: time.Now().UTC(), OK: err == nil, Event: event}
	if err != nil {
		d.Error = err.Error()
	}
	if err := al.store.PutChannelDelivery(id, d); err != nil && !errors.Is(err, storage.ErrNotFound) {
		al.log.Warn("channel delivery not recorded", "channel_id", id, "error", err)
	}
}

// LastDeliveries is the last delivery of every channel that has had one.
func (al *Alerts) LastDeliveries() (map[string]storage.ChannelDelivery, error) {
	return al.store.ChannelDeliveries()
}

// TestChannel sends a test message through one channel at once.
func (al *Alerts) TestChannel(ctx context.Context, id string) error {
	chans, err := al.store.ListChannels()
	if err != nil {
		return err
	}
	for _, ch := range chans {
		if ch.ID == id {
			return al.sendTo(ctx, ch, notify.Message{Event: "test", AlertID: "test", Rule: "test", Severity: notify.Info,
				Title: "restic-manager test notification", Text: "If you can read this, the channel " + ch.Name + " works.", Since: time.Now()})
		}
	}
	return storage.ErrNotFound
}

// Ack acknowledges a firing alert: it stays firing (and visible) but is not
// notified again until it resolves and fires anew.
func (al *Alerts) Ack(id, by string) (storage.Alert, error) {
	return al.store.UpdateAlert(id, func(a *storage.Alert, exists bool) error {
		if !exists {
			return storage.ErrNotFound
		}
		a.AckedBy, a.AckedAt = by, time.Now().UTC()
		return nil
	})
}

// Silence mutes an alert's notifications for d (at most 90 days).
func (al *Alerts) Silence(id string, d time.Duration) (storage.Alert, error) {
	if d <= 0 || d > 90*24*time.Hour {
		return storage.Alert{}, input.Errorf("for must be a duration such as \"2h\" (at most 90 days)")
	}
	return al.store.UpdateAlert(id, func(a *storage.Alert, exists bool) error {
		if !exists {
			return storage.ErrNotFound
		}
		a.SilencedUntil = time.Now().UTC().Add(d)
		return nil
	})
}
