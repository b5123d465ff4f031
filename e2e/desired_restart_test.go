package e2e

import (
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// The broker keeps desired schedules in memory only; after a kill -9 and a
// restart the console republishes them, so an agent that subscribes then
// still gets its current desired state, retained.
func TestDesiredSchedulesAfterRestart(t *testing.T) {
	t.Parallel()
	s := newServer(t, "--enroll-rate=-1")
	cred, id := s.credential("desired-1")
	repo := s.createRepo("r", "rest:http://127.0.0.1:9/r/", "pw", id)
	r := s.putSchedules(id, []map[string]any{{"name": "nightly", "kind": "backup", "repo_id": repo, "cron": "0 3 * * *", "enabled": true, "paths": []string{"/etc"}}})
	s.Proc.Kill()
	s2 := startServer(t, s.Data, s.HTTPAddr, s.MQTTAddr, "--enroll-rate=-1")
	c, _, err := dialMQTT(t, s2, id, id, cred.Password, nil)
	if err != nil {
		t.Fatal(err)
	}
	if code := c.subscribe(t, wire.SchedulesDesiredTopic(id)); code > 2 {
		t.Fatalf("subscribe: %#x", code)
	}
	deadline := time.After(20 * time.Second)
	for {
		select {
		case p := <-c.received:
			d, err := wire.DecodeSchedulesDesired(p.Payload)
			if err != nil {
				t.Fatal(err)
			}
			if d.Version == r.Version && len(d.Schedules) == 1 {
				return
			}
		case <-deadline:
			t.Fatalf("no desired schedules at version %d after the restart", r.Version)
		}
	}
}
