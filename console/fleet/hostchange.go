package fleet

import (
	"maps"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// HostChange is a partial update of a host's own settings.
type HostChange struct {
	Name *string
	// StaleAfter overrides the staleness threshold; "" derives it from the
	// host's schedules again.
	StaleAfter *string
	// Labels replace the host's whole set (wire.ValidateLabels); nil
	// leaves them, an empty map clears them.
	Labels map[string]string
}

// UpdateHost renames a host, sets its staleness threshold or its labels.
func (f *Fleet) UpdateHost(id string, ch HostChange) (storage.Host, error) {
	if err := wire.ValidateLabels(ch.Labels); err != nil {
		return storage.Host{}, Invalid("%s", err)
	}
	var stale time.Duration
	if ch.StaleAfter != nil && *ch.StaleAfter != "" {
		d, err := time.ParseDuration(*ch.StaleAfter)
		if err != nil || d < 0 {
			return storage.Host{}, Invalid("stale_after must be a duration such as \"26h\" (empty: derive it from the schedules)")
		}
		stale = d
	}
	h, err := f.store.UpdateHost(id, func(h *storage.Host) error {
		if ch.Name != nil {
			n := strings.TrimSpace(*ch.Name)
			if n == "" || len(n) > 200 {
				return Invalid("name must be 1-200 characters")
			}
			h.Name = n
		}
		if ch.StaleAfter != nil {
			h.StaleAfter = stale
		}
		if ch.Labels != nil {
			h.Labels = nil
			if len(ch.Labels) > 0 {
				h.Labels = maps.Clone(ch.Labels)
			}
		}
		return nil
	})
	if err == nil && ch.Labels != nil {
		f.hostChanged(h)
	}
	return h, err
}
