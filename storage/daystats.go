package storage

import (
	"errors"
	"fmt"

	"github.com/dgraph-io/badger/v4"
)

// DayStats counts one UTC day's backups across the fleet, for the
// dashboard's charts (console/daystats adds to them as jobs end).
type DayStats struct {
	Day           string `json:"day"` // 2006-01-02, UTC
	BackupsOK     int    `json:"backups_ok"`
	BackupsFailed int    `json:"backups_failed"`
	DataAdded     uint64 `json:"data_added"`
}

const dayStatsPrefix = "daystats/"

// AddDayStats adds each entry's counts to its day's record, in one
// transaction.
func (s *Store) AddDayStats(add []DayStats) error {
	if len(add) == 0 {
		return nil
	}
	err := s.update(func(txn *badger.Txn) error {
		for _, a := range add {
			if len(a.Day) != len("2006-01-02") {
				return fmt.Errorf("day %q: %w", a.Day, ErrInvalid)
			}
			key := []byte(dayStatsPrefix + a.Day)
			var cur DayStats
			if err := getJSON(txn, key, &cur); err != nil && !errors.Is(err, ErrNotFound) {
				return err
			}
			cur.Day = a.Day
			cur.BackupsOK += a.BackupsOK
			cur.BackupsFailed += a.BackupsFailed
			cur.DataAdded += a.DataAdded
			if err := setJSON(txn, key, cur); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storage: add day stats: %w", err)
	}
	return nil
}

// DayStatsSince returns the days from `from` (2006-01-02) on, oldest
// first; days without a record are absent.
func (s *Store) DayStatsSince(from string) ([]DayStats, error) {
	var out []DayStats
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(dayStatsPrefix)})
		defer it.Close()
		for it.Seek([]byte(dayStatsPrefix + from)); it.Valid(); it.Next() {
			var d DayStats
			if err := it.Item().Value(func(v []byte) error { return decode(v, &d) }); err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("storage: day stats: %w", err)
	}
	return out, nil
}
