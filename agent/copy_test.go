package agent

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/wire"
)

// copyCmd is a copy of this host's snapshots (named by hostname in the
// fake) into a destination sealed like the source.
func (e *testEnv) copyCmd(jobID, hostname string, to wire.RepoSpec) wire.Command {
	e.t.Helper()
	cmd := e.backup(jobID, time.Now())
	plain, _ := json.Marshal(to)
	sealed, err := seal.Seal(e.recipient, plain)
	if err != nil {
		e.t.Fatal(err)
	}
	cmd.Kind, cmd.SealedToRepo = wire.JobCopy, sealed
	cmd.Args, _ = json.Marshal(wire.CopyArgs{ToRepoID: "repo-2", Hostname: hostname, LimitUploadKiB: 100})
	return cmd
}

// A copy opens both sealed repositories, runs with the destination and
// the limits in the runner's spec, reports the runner's output, and its
// journal entry keeps no secret once it ran.
func TestCopyJob(t *testing.T) {
	b := newTestBroker(t)
	e := newTestEnv(t, b)
	e.start()
	b.waitStatus(t, true, 0)
	to := wire.RepoSpec{URL: "rest:http://127.0.0.1:1/other", Password: "pw-2", Env: map[string]string{"AWS_ACCESS_KEY_ID": "k2"}}
	b.send(t, e.copyCmd("job-copy", "h1", to))
	r := b.waitResult(t, "job-copy")
	var out wire.CopyOutput
	if r.Status != wire.StatusSucceeded || json.Unmarshal(r.Output, &out) != nil || len(out.Copied) != 1 || out.Skipped != 2 {
		t.Fatalf("copy: %+v", r)
	}
	spec, ok := e.restic.spec("h1")
	if !ok || spec.Kind != wire.JobCopy || spec.Repo.URL != "rest:http://127.0.0.1:1/repo" || spec.Copy.To.URL != to.URL ||
		spec.Copy.To.Password != to.Password || spec.Copy.To.Env["AWS_ACCESS_KEY_ID"] != "k2" || spec.Copy.Hostname != "h1" || spec.LimitUploadKiB != 100 {
		t.Errorf("spec %+v", spec)
	}
	if en := e.entry("job-copy"); en.Command.SealedRepo != "" || en.Command.SealedToRepo != "" || en.Command.Args != nil {
		t.Errorf("done entry keeps the sealed repositories: %+v", en.Command)
	}

	// The destination's environment is allowlisted like the source's.
	to.Env = map[string]string{"LD_PRELOAD": "/tmp/evil.so"}
	b.send(t, e.copyCmd("job-copy-env", "h2", to))
	r = b.waitResult(t, "job-copy-env")
	if r.Status != wire.StatusFailed || !strings.Contains(r.Error, "the copy's destination") || !strings.Contains(r.Error, "LD_PRELOAD") {
		t.Errorf("destination with LD_PRELOAD: %s %q", r.Status, r.Error)
	}
	if _, ran := e.restic.spec("h2"); ran {
		t.Error("restic ran with a refused destination")
	}
}
