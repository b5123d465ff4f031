package agent

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/wire"
)

// A repository whose environment names anything but a restic backend's
// variables (LD_PRELOAD would run code as the agent's user) fails its job
// before restic runs, whatever the console sent.
func TestRepositoryEnvironmentIsAllowlisted(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	e.start()
	b.waitStatus(t, true, 0)
	cmd := e.backup("job-env", time.Now())
	repo, _ := json.Marshal(wire.RepoSpec{URL: "rest:http://127.0.0.1:1/repo", Password: "pw",
		Env: map[string]string{"AWS_ACCESS_KEY_ID": "k", "LD_PRELOAD": "/tmp/evil.so"}})
	sealed, err := seal.Seal(e.recipient, repo)
	if err != nil {
		t.Fatal(err)
	}
	cmd.SealedRepo = sealed
	b.send(t, cmd)
	r := b.waitResult(t, "job-env")
	if r.Status != wire.StatusFailed || !strings.Contains(r.Error, "LD_PRELOAD") {
		t.Errorf("job with LD_PRELOAD in its repository: %s %q, want failed naming it", r.Status, r.Error)
	}
	if calls, _ := e.restic.runs(); slices.Contains(calls, "job-env") {
		t.Error("restic ran with a refused environment")
	}
}
