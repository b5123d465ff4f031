package storage

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// DrillPoint is one restore drill of a host's backup, for the host page's
// history and chart.
type DrillPoint struct {
	JobID                 string    `json:"job_id"`
	At                    time.Time `json:"at"`
	Status                string    `json:"status"`
	RestoreBytesPerS      float64   `json:"restore_bytes_per_s"`
	EstimatedFullRestoreS float64   `json:"estimated_full_restore_s"`
	FilesChecked          int       `json:"files_checked"`
	BytesChecked          int64     `json:"bytes_checked"`
	Mismatches            int       `json:"mismatches"`
}

// MaxDrillHistory bounds a host's drill history: a weekly drill keeps two
// years, a daily one three months.
const MaxDrillHistory = 100

// drillsKey holds a host's drill history apart from its record: the host
// record is read on every dashboard and report scan, the history only on
// its page.
func drillsKey(hostID string) []byte { return []byte("drills/" + hostID) }

type drillHistory struct {
	Points []DrillPoint `json:"points"`
}

// AddDrill adds a drill to a host's history, oldest first, keeping the
// newest MaxDrillHistory. A drill already there (a redelivered result)
// changes nothing: added is false. ErrNotFound: the host does not exist.
func (s *Store) AddDrill(hostID string, p DrillPoint) (added bool, err error) {
	if err := validID(hostID); err != nil {
		return false, fmt.Errorf("storage: add drill: %w", err)
	}
	key := drillsKey(hostID)
	err = s.modify(key, func(txn *badger.Txn) error {
		added = false
		if err := present(txn, hostKey(hostID)); err != nil {
			return err // a deleted host gets no history
		}
		var h drillHistory
		raw, err := getJSONRaw(txn, key, &h)
		if err != nil && !errors.Is(err, ErrNotFound) {
			return err
		}
		if slices.ContainsFunc(h.Points, func(x DrillPoint) bool { return x.JobID == p.JobID }) {
			return nil
		}
		i, _ := slices.BinarySearchFunc(h.Points, p.At, func(x DrillPoint, t time.Time) int { return x.At.Compare(t) })
		h.Points = slices.Insert(h.Points, i, p)
		if n := len(h.Points) - MaxDrillHistory; n > 0 {
			h.Points = slices.Delete(h.Points, 0, n)
		}
		added = true
		return setChanged(txn, key, raw, h)
	})
	if errors.Is(err, errUnchanged) {
		err = nil
	}
	if err != nil {
		return false, fmt.Errorf("storage: add drill of %s: %w", hostID, err)
	}
	return added, nil
}

// DrillHistory is a host's drills, oldest first (empty when it has none).
func (s *Store) DrillHistory(hostID string) ([]DrillPoint, error) {
	var h drillHistory
	err := s.get(drillsKey(hostID), &h)
	if err != nil && !errors.Is(err, ErrNotFound) {
		return nil, fmt.Errorf("storage: drill history of %s: %w", hostID, err)
	}
	if h.Points == nil {
		h.Points = []DrillPoint{}
	}
	return h.Points, nil
}
