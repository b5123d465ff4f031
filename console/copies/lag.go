package copies

import (
	"encoding/json"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// Snapshot is what the lag reads of a snapshot in a cached list (restic's
// snapshots --json; runner.Snapshot).
type Snapshot struct {
	ID       string    `json:"id"`
	Original string    `json:"original,omitempty"`
	Hostname string    `json:"hostname"`
	Time     time.Time `json:"time"`
}

// ParseSnapshots reads a cached snapshot list.
func ParseSnapshots(raw []byte) ([]Snapshot, error) {
	var out []Snapshot
	if err := json.Unmarshal(raw, &out); err != nil {
		return nil, err
	}
	return out, nil
}

// origin is the snapshot a copy chain started from: restic's copy records
// it as the copy's original (a copy of a copy keeps the first one's).
func (s Snapshot) origin() string {
	if s.Original != "" {
		return s.Original
	}
	return s.ID
}

// Lag counts the snapshots of src that have no copy in dst: a source
// snapshot is there when dst holds a snapshot with its ID as original (or
// its own original), or the same ID.
func Lag(src, dst []Snapshot) storage.CopyLag {
	there := make(map[string]bool, 2*len(dst))
	for _, s := range dst {
		there[s.ID] = true
		if s.Original != "" {
			there[s.Original] = true
		}
	}
	var l storage.CopyLag
	for _, s := range src {
		if there[s.origin()] || there[s.ID] {
			continue
		}
		l.MissingSnapshots++
		if l.ByHost == nil {
			l.ByHost = map[string]int{}
		}
		l.ByHost[s.Hostname]++
		if o, seen := l.OldestByHost[s.Hostname]; !seen || s.Time.Before(o) {
			if l.OldestByHost == nil {
				l.OldestByHost = map[string]time.Time{}
			}
			l.OldestByHost[s.Hostname] = s.Time.UTC()
		}
		if t := s.Time.UTC(); l.OldestMissingAt == nil || t.Before(*l.OldestMissingAt) {
			l.OldestMissingAt = &t
		}
	}
	return l
}
