package view

import (
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// Channel is a notification channel as the API and pages show it: never
// its configuration (sealed: URLs with tokens, passwords), with the outcome
// of the last message sent through it.
type Channel struct {
	ID           string                   `json:"id"`
	Name         string                   `json:"name"`
	Kind         string                   `json:"kind"`
	MinSeverity  string                   `json:"min_severity"`
	CreatedAt    time.Time                `json:"created_at"`
	LastDelivery *storage.ChannelDelivery `json:"last_delivery,omitempty"`
}

// ChannelsOf is the view of the channels with their last deliveries.
func ChannelsOf(chans []storage.Channel, deliveries map[string]storage.ChannelDelivery) []Channel {
	out := make([]Channel, 0, len(chans))
	for _, ch := range chans {
		v := Channel{ID: ch.ID, Name: ch.Name, Kind: ch.Kind, MinSeverity: ch.MinSeverity, CreatedAt: ch.CreatedAt}
		if d, ok := deliveries[ch.ID]; ok {
			v.LastDelivery = &d
		}
		out = append(out, v)
	}
	return out
}
