package alerts

import (
	"context"
	"encoding/json"
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
	if strings.TrimSpace(req.Name) == "" {
		return storage.Channel{}, input.Errorf("name is required")
	}
	if err := req.Config.Validate(); err != nil {
		return storage.Channel{}, input.Errorf("%v", err)
	}
	cfg, _ := json.Marshal(req.Config)
	return al.store.CreateChannel(storage.Channel{ID: token.NewID("chan"), Name: req.Name, Kind: req.Kind,
		MinSeverity: req.Config.MinSeverity, CreatedAt: time.Now().UTC()}, cfg)
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
