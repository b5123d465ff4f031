package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// openTest opens a store in a fresh directory and closes it at test end.
func openTest(t testing.TB) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { s.Close() })
	return s, dir
}

func reopen(t *testing.T, s *Store, dir string) *Store {
	t.Helper()
	if err := s.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	s2, err := Open(dir)
	if err != nil {
		t.Fatalf("reopen: %v", err)
	}
	t.Cleanup(func() { s2.Close() })
	return s2
}

func hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// ts returns a fixed UTC time; UTC survives the JSON round trip exactly, so
// records compare with reflect.DeepEqual.
func ts(sec int) time.Time {
	return time.Date(2025, 3, 1, 10, 0, 0, 0, time.UTC).Add(time.Duration(sec) * time.Second)
}

func wantErr(t *testing.T, err, target error) {
	t.Helper()
	if !errors.Is(err, target) {
		t.Fatalf("got error %v, want %v", err, target)
	}
}

func sampleHost(id string) Host {
	return Host{
		ID: id, Name: "web " + id, CredentialHash: hash("cred" + id), PublicKey: "age1xyz",
		Enrolled: true, Online: true, OS: "linux", Arch: "amd64", Hostname: id + ".example",
		AgentVersion: "1.2.3", ResticVersion: "0.17.3", StartedAt: ts(1), LastSeen: ts(2), CreatedAt: ts(0),
		LastBackup: &LastBackup{JobID: "j1", Kind: "backup", Status: JobSucceeded, EndedAt: ts(3), SnapshotID: "abcd"},
		LastJob:    &LastBackup{JobID: "j2", Kind: "check", Status: JobFailed, EndedAt: ts(4)},
	}
}

func sampleJob(id, host string, created time.Time) Job {
	code := 3
	return Job{
		ID: id, HostID: host, RepoID: "r1", Kind: "backup", Args: json.RawMessage(`{"paths":["/etc"]}`),
		ActorKind: "user", Actor: "alice", ScheduleID: "s1", Status: JobQueued, CreatedAt: created,
		ExpiresAt: created.Add(time.Hour), ExitCode: &code, TimeoutS: 60,
		Progress: &Progress{Seq: 1, Percent: 12.5, BytesDone: 10, BytesTotal: 100, CurrentFiles: []string{"/etc/passwd"}, UpdatedAt: created},
	}
}

func TestHostRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	h := sampleHost("h1")
	if err := s.CreateHost(h); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetHost("h1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, h) {
		t.Fatalf("GetHost = %+v, want %+v", got, h)
	}
	wantErr(t, s.CreateHost(h), ErrExists)
	_, err = s.GetHost("nope")
	wantErr(t, err, ErrNotFound)
	wantErr(t, s.CreateHost(Host{ID: "a/b"}), ErrInvalid)
	wantErr(t, s.CreateHost(Host{}), ErrInvalid)

	upd, err := s.UpdateHost("h1", func(h *Host) error { h.Online = false; h.Name = "renamed"; return nil })
	if err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetHost("h1")
	if got.Online || got.Name != "renamed" || !reflect.DeepEqual(got, upd) {
		t.Fatalf("after update: %+v (returned %+v)", got, upd)
	}

	boom := errors.New("boom")
	_, err = s.UpdateHost("h1", func(h *Host) error { h.Name = "lost"; return boom })
	wantErr(t, err, boom)
	if got, _ = s.GetHost("h1"); got.Name != "renamed" {
		t.Fatalf("aborted update was written: %q", got.Name)
	}
	_, err = s.UpdateHost("h1", func(h *Host) error { h.ID = "other"; return nil })
	wantErr(t, err, ErrInvalid)
	_, err = s.UpdateHost("nope", func(*Host) error { t.Error("fn called for missing host"); return nil })
	wantErr(t, err, ErrNotFound)
}

func TestListHosts(t *testing.T) {
	s, _ := openTest(t)
	for _, id := range []string{"h03", "h01", "h10", "h02", "h11"} {
		if err := s.CreateHost(Host{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	ids := func(hs []Host) (out []string) {
		for _, h := range hs {
			out = append(out, h.ID)
		}
		return out
	}
	for _, tc := range []struct {
		after string
		limit int
		want  []string
	}{
		{"", 0, []string{"h01", "h02", "h03", "h10", "h11"}},
		{"", 2, []string{"h01", "h02"}},
		{"h02", 2, []string{"h03", "h10"}},
		{"h1", -1, []string{"h10", "h11"}},
		{"h11", 10, nil},
	} {
		hs, err := s.ListHosts(tc.after, tc.limit)
		if err != nil {
			t.Fatal(err)
		}
		if hs == nil {
			t.Error("ListHosts returned nil slice")
		}
		if got := ids(hs); !reflect.DeepEqual(got, tc.want) {
			t.Errorf("ListHosts(%q, %d) = %v, want %v", tc.after, tc.limit, got, tc.want)
		}
	}
}

func TestRepoRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	r := Repo{ID: "r1", Name: "offsite", DisplayURL: "s3:https://s3.example/bucket", CreatedAt: ts(0)}
	sec := RepoSecrets{URL: "s3:https://s3.example/bucket", Password: "pw", Env: map[string]string{"AWS_SECRET_ACCESS_KEY": "k"}}
	created, err := s.CreateRepo(r, sec)
	if err != nil {
		t.Fatal(err)
	}
	if created.Sealed != nil || !reflect.DeepEqual(created, r) {
		t.Fatalf("CreateRepo returned %+v", created)
	}
	got, err := s.GetRepo("r1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Sealed != nil || !reflect.DeepEqual(got, r) {
		t.Fatalf("GetRepo = %+v", got)
	}
	gotSec, err := s.RepoSecrets("r1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(gotSec, sec) {
		t.Fatalf("RepoSecrets = %+v", gotSec)
	}

	if _, err := s.CreateRepo(Repo{ID: "r0", Name: "local"}, RepoSecrets{URL: "/srv/restic", Password: "p0"}); err != nil {
		t.Fatal(err)
	}
	repos, err := s.ListRepos()
	if err != nil {
		t.Fatal(err)
	}
	if len(repos) != 2 || repos[0].ID != "r0" || repos[1].ID != "r1" {
		t.Fatalf("ListRepos = %+v", repos)
	}
	for _, r := range repos {
		if r.Sealed != nil {
			t.Fatalf("ListRepos leaked sealed secrets of %s", r.ID)
		}
	}

	_, err = s.CreateRepo(r, sec)
	wantErr(t, err, ErrExists)
	_, err = s.CreateRepo(Repo{Name: "no id"}, sec)
	wantErr(t, err, ErrInvalid)
	_, err = s.GetRepo("nope")
	wantErr(t, err, ErrNotFound)
	_, err = s.RepoSecrets("nope")
	wantErr(t, err, ErrNotFound)
}

func TestJobRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	j := sampleJob("j1", "h1", ts(0))
	j.Summary = json.RawMessage(`{"files_new":3}`)
	if err := s.CreateJob(j); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetJob("j1")
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, j) {
		t.Fatalf("GetJob = %+v, want %+v", got, j)
	}
	wantErr(t, s.CreateJob(j), ErrExists)
	_, err = s.GetJob("nope")
	wantErr(t, err, ErrNotFound)
	wantErr(t, s.CreateJob(Job{ID: "j2"}), ErrInvalid) // no host

	upd, err := s.UpdateJob("j1", func(j *Job) error {
		j.Status = JobSucceeded
		j.EndedAt = ts(30)
		j.SnapshotID = "snap"
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if got, _ = s.GetJob("j1"); !reflect.DeepEqual(got, upd) || got.Status != JobSucceeded || got.SnapshotID != "snap" {
		t.Fatalf("after update: %+v", got)
	}
	_, err = s.UpdateJob("j1", func(j *Job) error { j.HostID = "h2"; return nil })
	wantErr(t, err, ErrInvalid)
	_, err = s.UpdateJob("nope", func(*Job) error { return nil })
	wantErr(t, err, ErrNotFound)

	// A job without CreatedAt gets one and is still indexed.
	if err := s.CreateJob(Job{ID: "j3", HostID: "h1", Status: JobQueued}); err != nil {
		t.Fatal(err)
	}
	jobs, _, err := s.ListJobs(JobQuery{HostID: "h1"})
	if err != nil {
		t.Fatal(err)
	}
	if len(jobs) != 2 || jobs[0].ID != "j3" || jobs[0].CreatedAt.IsZero() {
		t.Fatalf("ListJobs = %+v", jobs)
	}
}

func TestUsersSessionsTokens(t *testing.T) {
	s, _ := openTest(t)
	if n, err := s.CountUsers(); err != nil || n != 0 {
		t.Fatalf("CountUsers = %d, %v", n, err)
	}
	u := User{Name: "alice", PasswordHash: "$argon2id$v=19$...", Role: "admin", CreatedAt: ts(0)}
	if err := s.CreateUser(u); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(User{Name: "bob", Role: "viewer"}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, s.CreateUser(u), ErrExists)
	wantErr(t, s.CreateUser(User{}), ErrInvalid)
	if got, err := s.GetUser("alice"); err != nil || !reflect.DeepEqual(got, u) {
		t.Fatalf("GetUser = %+v, %v", got, err)
	}
	_, err := s.GetUser("carol")
	wantErr(t, err, ErrNotFound)
	if n, err := s.CountUsers(); err != nil || n != 2 {
		t.Fatalf("CountUsers = %d, %v", n, err)
	}

	// Sessions.
	sess := Session{User: "alice", CreatedAt: ts(0), ExpiresAt: ts(3600)}
	if err := s.PutSession(hash("s1"), sess); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetSession(hash("s1"), ts(10)); err != nil || !reflect.DeepEqual(got, sess) {
		t.Fatalf("GetSession = %+v, %v", got, err)
	}
	_, err = s.GetSession(hash("s1"), ts(3600))
	wantErr(t, err, ErrNotFound)
	// The expired session was deleted, not merely hidden.
	_, err = s.GetSession(hash("s1"), ts(10))
	wantErr(t, err, ErrNotFound)

	if err := s.PutSession(hash("s2"), sess); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteSession(hash("s2")); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetSession(hash("s2"), ts(10))
	wantErr(t, err, ErrNotFound)
	if err := s.DeleteSession(hash("s2")); err != nil {
		t.Fatalf("second DeleteSession: %v", err)
	}
	// A session without expiry fails closed.
	if err := s.PutSession(hash("s3"), Session{User: "alice"}); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetSession(hash("s3"), ts(0))
	wantErr(t, err, ErrNotFound)

	// API tokens.
	tok := APIToken{Name: "ci", User: "alice", CreatedAt: ts(0)}
	if err := s.PutAPIToken(hash("t1"), tok); err != nil {
		t.Fatal(err)
	}
	if got, err := s.GetAPIToken(hash("t1")); err != nil || !reflect.DeepEqual(got, tok) {
		t.Fatalf("GetAPIToken = %+v, %v", got, err)
	}
	_, err = s.GetAPIToken(hash("t2"))
	wantErr(t, err, ErrNotFound)

	// A raw token instead of its hash is refused.
	wantErr(t, s.PutAPIToken([]byte("raw-token"), tok), ErrInvalid)
	_, err = s.GetSession([]byte("raw"), ts(0))
	wantErr(t, err, ErrInvalid)
}

func TestEnrollToken(t *testing.T) {
	s, _ := openTest(t)
	tok := EnrollToken{HostID: "h1", CreatedAt: ts(0), ExpiresAt: ts(600)}
	if err := s.PutEnrollToken(hash("e1"), tok); err != nil {
		t.Fatal(err)
	}
	got, err := s.ConsumeEnrollToken(hash("e1"), ts(10))
	if err != nil || !reflect.DeepEqual(got, tok) {
		t.Fatalf("ConsumeEnrollToken = %+v, %v", got, err)
	}
	_, err = s.ConsumeEnrollToken(hash("e1"), ts(10))
	wantErr(t, err, ErrNotFound)

	if err := s.PutEnrollToken(hash("e2"), tok); err != nil {
		t.Fatal(err)
	}
	_, err = s.ConsumeEnrollToken(hash("e2"), ts(600))
	wantErr(t, err, ErrNotFound)
	// Expired tokens are deleted: not usable even with an earlier clock.
	_, err = s.ConsumeEnrollToken(hash("e2"), ts(10))
	wantErr(t, err, ErrNotFound)
}

// TestEnrollTokenConcurrent: of many simultaneous consumers exactly one wins.
func TestEnrollTokenConcurrent(t *testing.T) {
	s, _ := openTest(t)
	if err := s.PutEnrollToken(hash("e"), EnrollToken{HostID: "h", ExpiresAt: ts(600)}); err != nil {
		t.Fatal(err)
	}
	const n = 10
	errs := make(chan error, n)
	for range n {
		go func() {
			_, err := s.ConsumeEnrollToken(hash("e"), ts(0))
			errs <- err
		}()
	}
	wins := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			wins++
		case !errors.Is(err, ErrNotFound):
			t.Errorf("unexpected error: %v", err)
		}
	}
	if wins != 1 {
		t.Fatalf("%d consumers got the token, want 1", wins)
	}
}

func TestReopenKeepsData(t *testing.T) {
	s, dir := openTest(t)
	h := sampleHost("h1")
	j := sampleJob("j1", "h1", ts(5))
	u := User{Name: "alice", Role: "admin", CreatedAt: ts(0)}
	sec := RepoSecrets{URL: "rest:https://backup.example/", Password: "hunter2"}
	if err := s.CreateHost(h); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateJob(j); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(u); err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateRepo(Repo{ID: "r1", Name: "rest"}, sec); err != nil {
		t.Fatal(err)
	}
	key1, err := os.ReadFile(filepath.Join(dir, masterKeyFile))
	if err != nil {
		t.Fatal(err)
	}

	s = reopen(t, s, dir)
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	s = reopen(t, s, dir)

	if key2, _ := os.ReadFile(filepath.Join(dir, masterKeyFile)); !bytes.Equal(key1, key2) {
		t.Fatal("master key changed across reopen")
	}
	if got, err := s.GetHost("h1"); err != nil || !reflect.DeepEqual(got, h) {
		t.Fatalf("GetHost after reopen = %+v, %v", got, err)
	}
	if got, err := s.GetJob("j1"); err != nil || !reflect.DeepEqual(got, j) {
		t.Fatalf("GetJob after reopen = %+v, %v", got, err)
	}
	if jobs, _, err := s.ListJobs(JobQuery{HostID: "h1"}); err != nil || len(jobs) != 1 {
		t.Fatalf("ListJobs after reopen = %+v, %v", jobs, err)
	}
	if got, err := s.GetUser("alice"); err != nil || !reflect.DeepEqual(got, u) {
		t.Fatalf("GetUser after reopen = %+v, %v", got, err)
	}
	if got, err := s.RepoSecrets("r1"); err != nil || !reflect.DeepEqual(got, sec) {
		t.Fatalf("RepoSecrets after reopen = %+v, %v", got, err)
	}
}

func TestUnknownRecordVersion(t *testing.T) {
	s, _ := openTest(t)
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set(hostKey("future"), []byte(`{"v":2,"d":{"id":"future"}}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	_, err = s.GetHost("future")
	wantErr(t, err, errUnsupportedVersion)
	_, err = s.ListHosts("", 0)
	wantErr(t, err, errUnsupportedVersion)
}

func TestNewerSchemaRefused(t *testing.T) {
	s, dir := openTest(t)
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(metaSchemaKey), []byte("2"))
	})
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	s2, err := Open(dir)
	if err == nil {
		s2.Close()
		t.Fatal("Open accepted a store with a newer schema")
	}
	wantErr(t, err, errSchemaTooNew)
}

func TestBackup(t *testing.T) {
	s, _ := openTest(t)
	if err := s.CreateHost(sampleHost("h1")); err != nil {
		t.Fatal(err)
	}
	var buf bytes.Buffer
	if err := s.Backup(&buf); err != nil {
		t.Fatal(err)
	}
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if err := db.Load(&buf, 16); err != nil {
		t.Fatal(err)
	}
	err = db.View(func(txn *badger.Txn) error {
		var h Host
		return getJSON(txn, hostKey("h1"), &h)
	})
	if err != nil {
		t.Fatalf("host missing from restored backup: %v", err)
	}
}
