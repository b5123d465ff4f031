package agent

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// A forget held by its guard is reported held; a copy of its command does
// not run it again, an admin's approval does, once.
func TestHeldForgetRunsAgainOnlyWhenApproved(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	e.start()
	b.waitStatus(t, true, 0)
	cmd := e.backup("job-f", time.Now())
	cmd.Kind = wire.JobForget
	cmd.Args, _ = json.Marshal(wire.ForgetArgs{Retention: wire.Retention{KeepLast: 1}, Tags: []string{"job-f"}})
	cmd.Guard = &wire.ForgetGuard{MaxRemovePercent: 50, NotAfter: time.Now().Add(time.Minute)}
	b.send(t, cmd)
	if r := b.waitResult(t, "job-f"); r.Status != wire.StatusHeld {
		t.Fatalf("guarded forget: %s %q, want held", r.Status, r.Error)
	}
	b.send(t, cmd) // a redelivery
	approved := cmd
	approved.Guard, approved.Approved, approved.IssuedAt = nil, true, time.Now().UTC()
	b.send(t, approved)
	waitFor(t, "the approved forget's result", func() bool {
		rs := b.results(t)["job-f"]
		return len(rs) > 1 && rs[len(rs)-1].Status == wire.StatusSucceeded
	})
	b.send(t, approved) // a redelivery of the approval
	time.Sleep(500 * time.Millisecond)
	if n := e.restic.count("job-f"); n != 2 {
		t.Errorf("the forget ran %d times, want 2 (held, then approved)", n)
	}
}
