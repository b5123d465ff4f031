package copies

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func hex(c byte) string { return strings.Repeat(string(c), 64) }

func TestLagComparesOriginals(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	src := []Snapshot{
		{ID: hex('a'), Hostname: "web", Time: t0},
		{ID: hex('b'), Hostname: "web", Time: t0.Add(time.Hour)},
		{ID: hex('c'), Hostname: "db", Time: t0.Add(2 * time.Hour)},
		// itself a copy from elsewhere: its copy here names the first original
		{ID: hex('d'), Original: hex('9'), Hostname: "db", Time: t0.Add(3 * time.Hour)},
	}
	dst := []Snapshot{
		{ID: hex('1'), Original: hex('a'), Hostname: "web"},
		{ID: hex('2'), Original: hex('9'), Hostname: "db"},
	}
	l := Lag(src, dst)
	if l.MissingSnapshots != 2 || l.ByHost["web"] != 1 || l.ByHost["db"] != 1 {
		t.Fatalf("lag %+v, want b and c missing", l)
	}
	if l.OldestMissingAt == nil || !l.OldestMissingAt.Equal(t0.Add(time.Hour)) {
		t.Fatalf("oldest missing %v", l.OldestMissingAt)
	}
	if l := Lag(src[:1], dst); l.MissingSnapshots != 0 || l.OldestMissingAt != nil {
		t.Fatalf("all copied: %+v", l)
	}
}

type fakePolicies struct{ pol storage.Policy }

func (p fakePolicies) CopyDest(h storage.Host, repoID string) (storage.Policy, bool) {
	return p.pol, repoID == p.pol.RepoID
}
func (p fakePolicies) CopyDestsOf(repoID string) []string {
	if repoID == p.pol.RepoID {
		return []string{p.pol.CopyToRepoID}
	}
	return nil
}
func (p fakePolicies) CopyLagMax(string) int { return p.pol.CopyLagMax }

func setup(t *testing.T) (*Copies, *storage.Store, *teststore.Recorder) {
	st := teststore.Open(t)
	rec := &teststore.Recorder{}
	f, err := fleet.New(fleet.Options{Store: st, Publisher: rec})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	_, rcpt, _ := seal.NewIdentity()
	if err := st.CreateHost(storage.Host{ID: "host-a", Name: "a", Hostname: "a.example", Enrolled: true, PublicKey: rcpt, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"repo-src", "repo-dst"} {
		if _, err := st.CreateRepo(storage.Repo{ID: id, Name: id, Hosts: []string{"host-a"}, HostsListed: true}, storage.RepoSecrets{URL: "/srv/" + id, Password: "pw"}); err != nil {
			t.Fatal(err)
		}
	}
	c := &Copies{f: f, store: st, pol: fakePolicies{storage.Policy{ID: "pol-1", RepoID: "repo-src", CopyToRepoID: "repo-dst", CopyLagMax: 1}}, log: discard()}
	return c, st, rec
}

func TestOneCopyPerBackupWhenTheResultIsRedelivered(t *testing.T) {
	c, st, _ := setup(t)
	now := time.Now().UTC()
	b := storage.Job{ID: "job-backup1", HostID: "host-a", RepoID: "repo-src", Kind: wire.JobBackup, Status: storage.JobSucceeded,
		ActorKind: "user", CreatedAt: now, EndedAt: now}
	if err := st.CreateJob(b); err != nil {
		t.Fatal(err)
	}
	c.JobEnded(b)
	c.JobEnded(b) // the same end again (a redelivered result, an end replaced)
	got, _ := st.GetJob(b.ID)
	if !strings.HasPrefix(got.CopyJobID, "job") {
		t.Fatalf("backup's copy job %q", got.CopyJobID)
	}
	jobs := copyJobs(t, st)
	if len(jobs) != 1 {
		t.Fatalf("%d copy jobs, want 1", len(jobs))
	}
	cp := jobs[0]
	var a wire.CopyArgs
	_ = json.Unmarshal(cp.Args, &a)
	if cp.ActorKind != "policy" || cp.Actor != "pol-1" || a.ToRepoID != "repo-dst" || a.Hostname != "a.example" || cp.RepoID != "repo-src" {
		t.Fatalf("copy job %+v args %s", cp, cp.Args)
	}
	// A failed backup makes none.
	f := b
	f.ID, f.Status = "job-backup2", storage.JobFailed
	_ = st.CreateJob(f)
	c.JobEnded(f)
	if jobs := copyJobs(t, st); len(jobs) != 1 {
		t.Fatalf("%d copy jobs after a failed backup", len(jobs))
	}
}

func copyJobs(t *testing.T, st *storage.Store) []storage.Job {
	t.Helper()
	all, _, err := st.ListJobs(storage.JobQuery{HostID: "host-a"})
	if err != nil {
		t.Fatal(err)
	}
	var out []storage.Job
	for _, j := range all {
		if j.Kind == wire.JobCopy {
			out = append(out, j)
		}
	}
	return out
}

func list(snaps ...Snapshot) []byte {
	b, _ := json.Marshal(snaps)
	return b
}

func TestMeasureStoresLagAndItFalls(t *testing.T) {
	c, st, _ := setup(t)
	t0 := time.Now().UTC().Add(-time.Hour).Truncate(time.Second)
	var src []Snapshot
	for i := range 3 {
		src = append(src, Snapshot{ID: hex("abc"[i]), Hostname: "a.example", Time: t0.Add(time.Duration(i) * time.Minute)})
	}
	_ = st.PutSnapshotCache("repo-src", list(src...))
	_ = st.PutSnapshotCache("repo-dst", list(Snapshot{ID: hex('1'), Original: hex('a')}))
	c.JobEnded(storage.Job{Kind: wire.JobHealth, RepoID: "repo-dst", Status: storage.JobSucceeded})
	r, _ := st.GetRepo("repo-src")
	if r.Health == nil || len(r.Health.CopyLag) != 1 {
		t.Fatalf("health %+v", r.Health)
	}
	l := r.Health.CopyLag[0]
	if l.ToRepoID != "repo-dst" || l.MissingSnapshots != 2 || l.ByHost["a.example"] != 2 || l.Max != 1 || !l.OldestMissingAt.Equal(t0.Add(time.Minute)) {
		t.Fatalf("lag %+v", l)
	}
	var dst []Snapshot
	for i, s := range src {
		dst = append(dst, Snapshot{ID: hex("123"[i]), Original: s.ID})
	}
	_ = st.PutSnapshotCache("repo-dst", list(dst...))
	c.JobEnded(storage.Job{Kind: wire.JobHealth, RepoID: "repo-src", Status: storage.JobSucceeded})
	r, _ = st.GetRepo("repo-src")
	if l := r.Health.CopyLag[0]; l.MissingSnapshots != 0 || l.OldestMissingAt != nil {
		t.Fatalf("lag after the copy %+v", l)
	}
}
