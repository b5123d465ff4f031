package fleet

import (
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A forget asked for an endpoint runs on the maintenance host, narrowed to
// the endpoint's snapshots and guarded; held, it frees the repository and
// waits; an admin's approval sends it again, unguarded, and it ends with
// the agent's result.
func TestHeldForgetWaitsForApproval(t *testing.T) {
	f, st, rec := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	enrolledHost(t, st, "host-m")
	if _, err := st.UpdateHost("host-a", func(h *storage.Host) error { h.Hostname = "web-a"; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a"}, HostsListed: true, MaintenanceHostID: "host-m"},
		storage.RepoSecrets{URL: "/srv/r", Password: "pw", Maintenance: &storage.RepoSecrets{URL: "/srv/m", Password: "pw"}}); err != nil {
		t.Fatal(err)
	}
	j, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobForget, Args: []byte(`{"retention":{"keep_last":1}}`), ActorKind: "schedule", Actor: "nightly"})
	if err != nil {
		t.Fatal(err)
	}
	command := func() wire.Command {
		t.Helper()
		c, err := wire.DecodeCommand(rec.Last(wire.CommandsTopic("host-m")))
		if err != nil {
			t.Fatalf("command to the maintenance host: %v", err)
		}
		return c
	}
	c := command()
	var args wire.ForgetArgs
	_ = json.Unmarshal(c.Args, &args)
	if j.HostID != "host-m" || len(args.Hosts) != 1 || args.Hosts[0] != "web-a" {
		t.Errorf("routed forget: host %s, --host %v; want host-m, [web-a]", j.HostID, args.Hosts)
	}
	if c.Guard == nil || c.Guard.MaxRemovePercent != 50 || c.Approved || c.Guard.NotAfter.After(time.Now().Add(5*time.Minute)) {
		t.Errorf("forget command guard %+v approved %v", c.Guard, c.Approved)
	}
	if _, err := f.ApproveJob(j.ID, "admin"); !errors.As(err, new(*input.Conflict)) {
		t.Errorf("approving a job that is not held: %v, want a conflict", err)
	}

	ingestAs(t, f, "host-m", wire.KindProgress, j.ID, &wire.Progress{JobID: j.ID, Seq: 1, StartedAt: time.Now().UTC()})
	check, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobCheck, ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	ingestAs(t, f, "host-m", wire.KindResult, j.ID, &wire.Result{JobID: j.ID, Status: wire.StatusHeld, EndedAt: time.Now().UTC(),
		Error: "held: the forget would remove 3 of 4 snapshots", Output: []byte(`{"total":4,"remove":3}`)})
	got := waitStatus(t, st, j.ID, storage.JobHeld)
	if got.Error == "" || storage.TerminalStatus(got.Status) {
		t.Errorf("held job: %+v", got)
	}
	// The repository is free for the check waiting behind the forget.
	deadline := time.Now().Add(10 * time.Second)
	for c, _ := st.GetJob(check.ID); c.Held; c, _ = st.GetJob(check.ID) {
		if time.Now().After(deadline) {
			t.Fatal("a held forget still holds its repository")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ingestAs(t, f, "host-a", wire.KindResult, check.ID, &wire.Result{JobID: check.ID, Status: wire.StatusSucceeded, EndedAt: time.Now().UTC()})
	waitStatus(t, st, check.ID, storage.JobSucceeded)

	a, err := f.ApproveJob(j.ID, "admin")
	if err != nil || a.Status != storage.JobQueued || a.ApprovedBy != "admin" {
		t.Fatalf("approve: %+v %v", a, err)
	}
	deadline = time.Now().Add(10 * time.Second)
	for c = command(); !c.Approved; c = command() {
		if time.Now().After(deadline) {
			t.Fatal("the approved forget was not sent again")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if c.Guard != nil || c.JobID != j.ID {
		t.Errorf("approved command: %+v", c)
	}
	// A late copy of the held result changes nothing; the agent's real end does.
	ingestAs(t, f, "host-m", wire.KindResult, j.ID, &wire.Result{JobID: j.ID, Status: wire.StatusHeld, EndedAt: time.Now().UTC()})
	if g, _ := st.GetJob(j.ID); g.Status != storage.JobQueued {
		t.Errorf("after a late held result: %s", g.Status)
	}
	ingestAs(t, f, "host-m", wire.KindResult, j.ID, &wire.Result{JobID: j.ID, Status: wire.StatusSucceeded, EndedAt: time.Now().UTC()})
	waitStatus(t, st, j.ID, storage.JobSucceeded)
}

// A held forget can be cancelled: it ends, nothing was deleted.
func TestHeldForgetCancelled(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	seedRepo(t, st, "repo-1")
	j, err := f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobForget, Args: []byte(`{"retention":{"keep_last":1}}`), ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	ingestAs(t, f, "host-a", wire.KindResult, j.ID, &wire.Result{JobID: j.ID, Status: wire.StatusHeld, EndedAt: time.Now().UTC(), Error: "held"})
	waitStatus(t, st, j.ID, storage.JobHeld)
	c, err := f.CancelJob(j.ID, "admin")
	if err != nil || c.Status != storage.JobCancelled {
		t.Fatalf("cancel of a held forget: %+v %v", c, err)
	}
}
