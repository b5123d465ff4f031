package fleet

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func TestCopyIsCheckedSealedAndGatedOnBothRepositories(t *testing.T) {
	f, st, rec := newTestFleet(t)
	id, rcpt, _ := seal.NewIdentity()
	if err := st.CreateHost(storage.Host{ID: "host-a", Name: "a", Hostname: "a.example", Enrolled: true, PublicKey: rcpt, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	enrolledHost(t, st, "host-b")
	for _, r := range []struct {
		id, url string
		hosts   []string
	}{{"repo-src", "/srv/src", []string{"host-a", "host-b"}}, {"repo-dst", "/srv/dst", []string{"host-a", "host-b"}}, {"repo-far", "/srv/far", []string{"host-b"}}} {
		if _, err := st.CreateRepo(storage.Repo{ID: r.id, Name: r.id, Hosts: r.hosts, HostsListed: true}, storage.RepoSecrets{URL: r.url, Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	copyTo := func(to string) (storage.Job, error) {
		return f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-src", Kind: wire.JobCopy, Args: []byte(`{"to_repo_id":"` + to + `","hostname":"forged"}`), ActorKind: "user", Actor: "u"})
	}
	for _, bad := range []struct{ to, want string }{
		{"repo-src", "another repository"},
		{"repo-none", "does not exist"},
		{"repo-far", "not bound"},
	} {
		if _, err := copyTo(bad.to); err == nil || !strings.Contains(err.Error(), bad.want) {
			t.Errorf("copy to %s: %v, want %q", bad.to, err, bad.want)
		}
	}

	// An exclusive job on the destination holds the copy.
	ctx := context.Background()
	prune, err := f.CreateJob(JobRequest{HostID: "host-b", RepoID: "repo-dst", Kind: wire.JobPrune, ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	cp, err := copyTo("repo-dst")
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := st.GetJob(cp.ID); !got.Held {
		t.Fatal("a copy went out during a prune of its destination")
	}
	var a wire.CopyArgs
	if err := json.Unmarshal(cp.Args, &a); err != nil || a.Hostname != "a.example" || a.ToRepoID != "repo-dst" {
		t.Fatalf("copy args %s: the console sets the host name", cp.Args)
	}
	end := func(host string, j storage.Job) {
		b, _ := wire.Encode(&wire.Result{JobID: j.ID, Status: wire.StatusSucceeded, EndedAt: time.Now().UTC()})
		if err := f.Ingest(ctx, host, wire.Topic{Host: host, Kind: wire.KindResult, Job: j.ID}, b); err != nil {
			t.Fatal(err)
		}
	}
	end("host-b", prune)
	deadline := time.Now().Add(5 * time.Second)
	for {
		raw := rec.Last(wire.CommandsTopic("host-a"))
		var cmd wire.Command
		if raw != nil && json.Unmarshal(raw, &cmd) == nil && cmd.JobID == cp.ID {
			if err := cmd.Validate(); err != nil {
				t.Fatal(err)
			}
			plain, err := seal.Open(id, cmd.SealedToRepo)
			if err != nil || !strings.Contains(string(plain), "/srv/dst") {
				t.Fatalf("sealed_to_repo: %s, %v", plain, err)
			}
			plain, _ = seal.Open(id, cmd.SealedRepo)
			if !strings.Contains(string(plain), "/srv/src") {
				t.Fatalf("sealed_repo: %s", plain)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the copy was not sent once the prune ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
	// While the copy runs, a check of the destination waits for it.
	check, err := f.CreateJob(JobRequest{HostID: "host-b", RepoID: "repo-dst", Kind: wire.JobCheck, ActorKind: "user", Actor: "u"})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := st.GetJob(check.ID); !got.Held {
		t.Fatal("a check of the destination went out during a copy")
	}
	end("host-a", cp)
	deadline = time.Now().Add(5 * time.Second)
	for {
		if got, _ := st.GetJob(check.ID); !got.Held {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("the check stayed held after the copy ended")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestCopySchedulesNeedBothRepositories(t *testing.T) {
	f, st, _ := newTestFleet(t)
	enrolledHost(t, st, "host-a")
	for _, id := range []string{"repo-src", "repo-dst"} {
		hosts := []string{"host-a"}
		if id == "repo-dst" {
			hosts = nil
		}
		if _, err := st.CreateRepo(storage.Repo{ID: id, Name: id, Hosts: hosts, HostsListed: true}, storage.RepoSecrets{URL: "/srv/" + id, Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	s := schedules.Schedule{Name: "catch up", Kind: wire.JobCopy, Cron: "0 4 * * *", Enabled: true, RepoID: "repo-src", ToRepoID: "repo-dst"}
	if _, err := f.PutSchedules("host-a", []schedules.Schedule{s}, false); err == nil || !strings.Contains(err.Error(), "not bound to repository repo-dst") {
		t.Fatalf("an operator's copy schedule to an unbound destination: %v", err)
	}
	self := s
	self.ToRepoID = "repo-src"
	if _, err := f.PutSchedules("host-a", []schedules.Schedule{self}, true); err == nil || !strings.Contains(err.Error(), "another repository") {
		t.Fatalf("a copy schedule to its source: %v", err)
	}
	if _, err := f.PutSchedules("host-a", []schedules.Schedule{s}, true); err != nil {
		t.Fatal(err)
	}
	if r, _ := st.GetRepo("repo-dst"); len(r.Hosts) != 1 || r.Hosts[0] != "host-a" {
		t.Fatalf("an admin's copy schedule binds the destination: %v", r.Hosts)
	}
}

// An init that copies chunker parameters carries that repository sealed
// as sealed_from_repo, and only to a host bound to it.
func TestInitWithChunkerSourceIsSealed(t *testing.T) {
	f, st, rec := newTestFleet(t)
	id, rcpt, _ := seal.NewIdentity()
	if err := st.CreateHost(storage.Host{ID: "host-a", Name: "a", Hostname: "a.example", Enrolled: true, PublicKey: rcpt, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, r := range []struct {
		id, url string
		hosts   []string
	}{{"repo-new", "/srv/new", []string{"host-a"}}, {"repo-main", "/srv/main", []string{"host-a"}}, {"repo-far", "/srv/far", nil}} {
		if _, err := st.CreateRepo(storage.Repo{ID: r.id, Name: r.id, Hosts: r.hosts, HostsListed: true}, storage.RepoSecrets{URL: r.url, Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	initFrom := func(from string) (storage.Job, error) {
		return f.CreateJob(JobRequest{HostID: "host-a", RepoID: "repo-new", Kind: wire.JobInit, Args: []byte(`{"copy_chunker_params_from":"` + from + `"}`), ActorKind: "user", Actor: "u"})
	}
	if _, err := initFrom("repo-far"); err == nil || !strings.Contains(err.Error(), "not bound") {
		t.Fatalf("init with chunker parameters of a repository the host is not bound to: %v", err)
	}
	j, err := initFrom("repo-main")
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var cmd wire.Command
		if raw := rec.Last(wire.CommandsTopic("host-a")); raw != nil && json.Unmarshal(raw, &cmd) == nil && cmd.JobID == j.ID {
			if err := cmd.Validate(); err != nil || cmd.SealedToRepo != "" {
				t.Fatalf("command %+v: %v", cmd, err)
			}
			plain, err := seal.Open(id, cmd.SealedFromRepo)
			if err != nil || !strings.Contains(string(plain), "/srv/main") {
				t.Fatalf("sealed_from_repo: %s, %v", plain, err)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the init was not sent")
		}
		time.Sleep(5 * time.Millisecond)
	}
}
