package storage

import (
	"fmt"
	"strings"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// ChannelDelivery is the outcome of the last message sent through a
// notification channel (an alert or a test), so the console can show
// whether a channel works without anyone reading the server's log.
type ChannelDelivery struct {
	At    time.Time `json:"at"`
	OK    bool      `json:"ok"`
	Event string    `json:"event,omitempty"` // firing, resolved or test
	Error string    `json:"error,omitempty"` // notify's errors carry no secret
}

const deliveryPrefix = "chandelivery/"

func deliveryKey(id string) []byte { return []byte(deliveryPrefix + id) }

// PutChannelDelivery records the last delivery through channel id. It
// records nothing for a channel that no longer exists (a delivery that
// raced the channel's deletion), so no record outlives its channel.
func (s *Store) PutChannelDelivery(id string, d ChannelDelivery) error {
	d.Error = Truncate(d.Error, MaxAuditDetail)
	err := s.update(func(txn *badger.Txn) error {
		if err := present(txn, channelKey(id)); err != nil {
			return err
		}
		return setJSON(txn, deliveryKey(id), d)
	})
	if err != nil {
		return fmt.Errorf("storage: channel %s delivery: %w", id, err)
	}
	return nil
}

// ChannelDeliveries returns the last delivery of every channel that has
// had one, by channel ID.
func (s *Store) ChannelDeliveries() (map[string]ChannelDelivery, error) {
	out := map[string]ChannelDelivery{}
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(deliveryPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d ChannelDelivery
			if err := it.Item().Value(func(b []byte) error { return decode(b, &d) }); err != nil {
				return err
			}
			out[strings.TrimPrefix(string(it.Item().Key()), deliveryPrefix)] = d
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: channel deliveries: %w", err)
	}
	return out, nil
}

// DeleteChannelDelivery forgets a channel's last delivery (its channel was
// deleted); no record is not an error.
func (s *Store) DeleteChannelDelivery(id string) error {
	if err := s.update(func(txn *badger.Txn) error { return txn.Delete(deliveryKey(id)) }); err != nil {
		return fmt.Errorf("storage: channel %s delivery: %w", id, err)
	}
	return nil
}
