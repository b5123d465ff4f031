package agent

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/wire"
)

// fireLog keeps each schedule's last fired window in one small JSON file,
// so that missed windows are caught up once across agent restarts.
type fireLog struct {
	path string
	mu   sync.Mutex
	m    map[string]fireLogEntry
}

type fireLogEntry struct {
	At   time.Time `json:"at"`
	Spec string    `json:"spec"`
}

var _ schedules.FireLog = (*fireLog)(nil)

func openFireLog(path string) (*fireLog, error) {
	l := &fireLog{path: path, m: map[string]fireLogEntry{}}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return l, nil
	}
	if err != nil {
		return nil, fmt.Errorf("fire log: %w", err)
	}
	if err := json.Unmarshal(b, &l.m); err != nil {
		// A damaged log only costs catch-up fires; start afresh.
		l.m = map[string]fireLogEntry{}
	}
	return l, nil
}

func (l *fireLog) Last(id string) (time.Time, string, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	e, ok := l.m[id]
	return e.At, e.Spec, ok
}

func (l *fireLog) Set(id string, at time.Time, spec string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.m[id] = fireLogEntry{At: at, Spec: spec}
	b, err := json.Marshal(l.m)
	if err != nil {
		return err
	}
	return writeFileAtomic(l.path, b, 0o600)
}

// scheduleSink queues fires and reports in the outbox: both must reach the
// console, in order, even across disconnects and restarts.
type scheduleSink struct{ a *Agent }

func (s scheduleSink) Fire(f wire.Fire) error {
	b, err := wire.Encode(&f)
	if err != nil {
		return err
	}
	return s.a.out.Put(wire.FiresTopic(s.a.cfg.HostID), b, false)
}

func (s scheduleSink) Report(r wire.SchedulesReported) error {
	b, err := wire.Encode(&r)
	if err != nil {
		return err
	}
	// Not retained: the console stores the report before its PUBACK, and
	// nobody else reads it; a retained copy per host cost the broker memory
	// and a retained-store write per report (docs/mqtt.md).
	return s.a.out.Put(wire.SchedulesReportedTopic(s.a.cfg.HostID), b, false)
}

// applyLoop applies desired states one at a time, newest first: Apply waits
// for the previous loop to stop, which must not happen in paho's handler.
func (a *Agent) applyLoop(done <-chan struct{}) {
	for {
		select {
		case <-done:
			return
		case d := <-a.desired:
			if err := a.sched.Apply(d); err != nil {
				a.log.Error("apply schedules", "version", d.Version, "error", err)
				continue
			}
			a.log.Info("schedules applied", "version", d.Version, "count", len(d.Schedules))
		}
	}
}

// offerDesired replaces any desired state still waiting to be applied.
func (a *Agent) offerDesired(d wire.SchedulesDesired) {
	for {
		select {
		case a.desired <- d:
			return
		default:
		}
		select {
		case <-a.desired:
		default:
		}
	}
}
