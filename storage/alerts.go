package storage

import (
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Alert states.
const (
	AlertFiring   = "firing"
	AlertResolved = "resolved"
)

// Alert is one (rule, subject) pair's alert: it fires, may be acknowledged
// or silenced, and resolves. Its ID is stable for the pair.
type Alert struct {
	ID            string    `json:"id"`
	Rule          string    `json:"rule"`
	Subject       string    `json:"subject"`
	HostID        string    `json:"host_id,omitempty"`
	RepoID        string    `json:"repo_id,omitempty"`
	Severity      string    `json:"severity"`
	State         string    `json:"state"`
	Since         time.Time `json:"since"`
	ResolvedAt    time.Time `json:"resolved_at,omitzero"`
	Message       string    `json:"message"`
	LastNotified  time.Time `json:"last_notified,omitzero"`
	AckedBy       string    `json:"acked_by,omitempty"`
	AckedAt       time.Time `json:"acked_at,omitzero"`
	SilencedUntil time.Time `json:"silenced_until,omitzero"`
}

// Channel is a notification channel; its configuration (URLs with tokens,
// SMTP passwords, webhook secrets) is sealed like repository secrets.
type Channel struct {
	ID          string    `json:"id"`
	Name        string    `json:"name"`
	Kind        string    `json:"kind"`
	MinSeverity string    `json:"min_severity"`
	CreatedAt   time.Time `json:"created_at"`
	Sealed      []byte    `json:"sealed,omitempty"`
}

// IntegrationUser is a read-only MQTT account for integrations.
type IntegrationUser struct {
	Name         string    `json:"name"`
	PasswordHash []byte    `json:"password_hash"`         // SHA-256 of a high-entropy generated password
	BrokerHash   string    `json:"broker_hash,omitempty"` // the same in an external broker's format
	CreatedAt    time.Time `json:"created_at"`
}

func alertKey(id string) []byte         { return []byte("alert/" + id) }
func channelKey(id string) []byte       { return []byte("channel/" + id) }
func mqttUserKey(name string) []byte    { return []byte("mqttuser/" + name) }
func settingKey(name string) []byte     { return []byte("setting/" + name) }
func channelSecretsAD(id string) []byte { return []byte("restic-manager channel " + id) }

// UpdateAlert is read-modify-write of one alert (a missing one starts empty,
// with the ID set). fn returning errAbort-like errors aborts.
func (s *Store) UpdateAlert(id string, fn func(a *Alert, exists bool) error) (Alert, error) {
	key := alertKey(id)
	var out Alert
	err := s.modify(key, func(txn *badger.Txn) error {
		a := Alert{ID: id}
		raw, err := getJSONRaw(txn, key, &a)
		exists := err == nil
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if err := fn(&a, exists); err != nil {
			return err
		}
		a.ID = id
		out = a
		return setChanged(txn, key, raw, a)
	})
	if err != nil {
		return Alert{}, fmt.Errorf("storage: alert %s: %w", id, err)
	}
	return out, nil
}

// GetAlert returns one alert or ErrNotFound.
func (s *Store) GetAlert(id string) (Alert, error) {
	var a Alert
	if err := s.get(alertKey(id), &a); err != nil {
		return a, fmt.Errorf("storage: alert %s: %w", id, err)
	}
	return a, nil
}

// GetAlerts returns the alerts among ids that exist, in one read
// transaction: a host's few possible alerts without walking every alert.
func (s *Store) GetAlerts(ids []string) ([]Alert, error) {
	var out []Alert
	err := s.db.View(func(txn *badger.Txn) error {
		for _, id := range ids {
			var a Alert
			err := getJSON(txn, alertKey(id), &a)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return fmt.Errorf("%s: %w", id, err)
			}
			out = append(out, a)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: get alerts: %w", err)
	}
	return out, nil
}

// ListAlerts returns alerts, firing ones only unless all is set.
func (s *Store) ListAlerts(all bool) ([]Alert, error) {
	out := []Alert{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("alert/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var a Alert
			if err := it.Item().Value(func(b []byte) error { return decode(b, &a) }); err != nil {
				return err
			}
			if all || a.State == AlertFiring {
				out = append(out, a)
			}
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list alerts: %w", err)
	}
	return out, nil
}

// CreateChannel seals cfg and stores the channel.
func (s *Store) CreateChannel(ch Channel, cfg []byte) (Channel, error) {
	if err := validID(ch.ID); err != nil {
		return Channel{}, fmt.Errorf("storage: channel: %w", err)
	}
	ch.Sealed = s.seal(cfg, channelSecretsAD(ch.ID))
	if err := s.insert(channelKey(ch.ID), ch); err != nil {
		return Channel{}, fmt.Errorf("storage: channel %s: %w", ch.ID, err)
	}
	ch.Sealed = nil
	return ch, nil
}

// ListChannels returns the channels with their sealed configuration cleared.
func (s *Store) ListChannels() ([]Channel, error) {
	out := []Channel{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte("channel/")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var ch Channel
			if err := it.Item().Value(func(b []byte) error { return decode(b, &ch) }); err != nil {
				return err
			}
			ch.Sealed = nil
			out = append(out, ch)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list channels: %w", err)
	}
	return out, nil
}

// ChannelConfig opens a channel's sealed configuration.
func (s *Store) ChannelConfig(id string) ([]byte, error) {
	var ch Channel
	if err := s.get(channelKey(id), &ch); err != nil {
		return nil, fmt.Errorf("storage: channel %s: %w", id, err)
	}
	plain, err := s.open(ch.Sealed, channelSecretsAD(id))
	if err != nil {
		return nil, fmt.Errorf("storage: channel %s: cannot decrypt: %w", id, err)
	}
	return plain, nil
}

// UpdateChannel is a read-modify-write of a channel and its sealed
// configuration: fn gets the record and the opened configuration, and
// returns the configuration to seal (the same bytes to keep it).
// ErrNotFound if there is no such channel.
func (s *Store) UpdateChannel(id string, fn func(ch *Channel, cfg []byte) ([]byte, error)) (Channel, error) {
	key := channelKey(id)
	var out Channel
	err := s.modify(key, func(txn *badger.Txn) error {
		var ch Channel
		if err := getJSON(txn, key, &ch); err != nil {
			return err
		}
		plain, err := s.open(ch.Sealed, channelSecretsAD(id))
		if err != nil {
			return fmt.Errorf("cannot decrypt: %w", err)
		}
		cfg, err := fn(&ch, plain)
		if err != nil {
			return err
		}
		ch.ID = id
		ch.Sealed = s.seal(cfg, channelSecretsAD(id))
		out = ch
		return setJSON(txn, key, ch)
	})
	if err != nil {
		return Channel{}, fmt.Errorf("storage: channel %s: %w", id, err)
	}
	out.Sealed = nil
	return out, nil
}

// DeleteChannel removes a channel and its sealed configuration;
// ErrNotFound if there is none.
func (s *Store) DeleteChannel(id string) error {
	key := channelKey(id)
	err := s.modify(key, func(txn *badger.Txn) error {
		if err := present(txn, key); err != nil {
			return err
		}
		return txn.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("storage: delete channel %s: %w", id, err)
	}
	return nil
}

// DeleteIntegrationUser removes a read-only MQTT user; ErrNotFound if there
// is none.
func (s *Store) DeleteIntegrationUser(name string) error {
	key := mqttUserKey(name)
	err := s.update(func(txn *badger.Txn) error {
		if err := present(txn, key); err != nil {
			return err
		}
		return txn.Delete(key)
	})
	if err != nil {
		return fmt.Errorf("storage: delete mqtt user %s: %w", name, err)
	}
	return nil
}

// PutIntegrationUser creates or replaces a read-only MQTT user.
func (s *Store) PutIntegrationUser(u IntegrationUser) error {
	if err := validID(u.Name); err != nil {
		return fmt.Errorf("storage: mqtt user: %w", err)
	}
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, mqttUserKey(u.Name), u) })
}

// GetIntegrationUser returns a read-only MQTT user or ErrNotFound.
func (s *Store) GetIntegrationUser(name string) (IntegrationUser, error) {
	var u IntegrationUser
	if err := s.get(mqttUserKey(name), &u); err != nil {
		return u, fmt.Errorf("storage: mqtt user %s: %w", name, err)
	}
	return u, nil
}

// ListIntegrationUsers returns every read-only MQTT user, by name.
func (s *Store) ListIntegrationUsers() ([]IntegrationUser, error) {
	var users []IntegrationUser
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = mqttUserKey("")
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var u IntegrationUser
			if err := it.Item().Value(func(b []byte) error { return decode(b, &u) }); err != nil {
				return fmt.Errorf("%s: %w", it.Item().Key(), err)
			}
			users = append(users, u)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list mqtt users: %w", err)
	}
	return users, nil
}

// PutSetting and GetSetting keep small console settings (JSON values).
func (s *Store) PutSetting(name string, v any) error {
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, settingKey(name), v) })
}

func (s *Store) GetSetting(name string, v any) error {
	if err := s.get(settingKey(name), v); err != nil {
		return fmt.Errorf("storage: setting %s: %w", name, err)
	}
	return nil
}
