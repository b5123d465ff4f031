package repos

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

func newTestRepos(t *testing.T) (*fleet.Fleet, *Repos, *storage.Store) {
	t.Helper()
	st := teststore.Open(t)
	f, err := fleet.New(fleet.Options{Store: st, Publisher: &teststore.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	rs := New(Options{Fleet: f})
	t.Cleanup(func() { rs.Close(); f.Close() })
	return f, rs, st
}

// An index job may store only so many entries, and nothing once it ended.
func TestIndexOutputIsBounded(t *testing.T) {
	f, rs, st := newTestRepos(t)
	teststore.EnrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	old := maxIndexNodes
	maxIndexNodes = 3
	t.Cleanup(func() { maxIndexNodes = old })
	rp, _ := st.GetRepo("repo-1")
	sid := strings.Repeat("ab", 32)
	j, err := rs.StartIndex(rp, sid, "host-a", "u")
	if err != nil {
		t.Fatal(err)
	}
	chunk := func(seq int64, names ...string) error {
		c := &wire.IndexChunk{JobID: j.ID, SnapshotID: sid, Seq: seq}
		for _, n := range names {
			c.Nodes = append(c.Nodes, wire.IndexNode{Path: "/" + n, Name: n, Type: "file"})
		}
		b, _ := wire.Encode(c)
		return f.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindOutput, Job: j.ID}, b)
	}
	if err := chunk(1, "a", "b"); err != nil {
		t.Fatal(err)
	}
	if err := chunk(2, "c", "d"); !errors.Is(err, broker.ErrRejected) {
		t.Fatalf("index entries past the bound: %v, want refused", err)
	}
	b, _ := wire.Encode(&wire.Result{JobID: j.ID, Status: wire.StatusFailed, EndedAt: time.Now().UTC()})
	if err := f.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindResult, Job: j.ID}, b); err != nil {
		t.Fatal(err)
	}
	if err := chunk(3, "e"); !errors.Is(err, broker.ErrRejected) {
		t.Fatalf("index entries after the job ended: %v, want refused", err)
	}
}
