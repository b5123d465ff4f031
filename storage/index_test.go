package storage

import (
	"errors"
	"fmt"
	"path"
	"reflect"
	"strings"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
)

func TestIndexListsDirectChildren(t *testing.T) {
	s, _ := openTest(t)
	snap := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	var nodes []IndexNode
	for _, p := range []string{"/a", "/ab", "/a/x", "/a/y", "/a/x/deep", "/ab/z"} {
		nodes = append(nodes, IndexNode{Path: p, Name: p[len(p)-1:], Type: "dir"})
	}
	nodes[0].Name, nodes[1].Name, nodes[4].Name = "a", "ab", "deep"
	for i := range 250 {
		nodes = append(nodes, IndexNode{Path: fmt.Sprintf("/a/f%03d", i), Name: fmt.Sprintf("f%03d", i), Type: "file", Size: uint64(i)})
	}
	if err := s.PutIndexNodes("repo-1", snap, nodes); err != nil {
		t.Fatal(err)
	}
	if err := s.PutIndexNodes("repo-1", snap, nodes[:10]); err != nil { // a redelivered chunk
		t.Fatal(err)
	}
	root, _, err := s.ListIndexDir("repo-1", snap, "/", "", 0)
	if err != nil || len(root) != 2 || root[0].Name != "a" || root[1].Name != "ab" {
		t.Fatalf("root = %+v %v", root, err)
	}
	var all []IndexNode
	cursor := ""
	for {
		page, next, err := s.ListIndexDir("repo-1", snap, "/a/", cursor, 100)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 252 { // x, y and 250 files; not /a/x/deep, not /ab/z
		t.Fatalf("/a has %d children over pages, want 252", len(all))
	}
	if sz, err := s.IndexSize("repo-1", snap); err != nil || sz == 0 {
		t.Fatalf("size %d %v", sz, err)
	}
	if err := s.DropIndex("repo-1", snap); err != nil {
		t.Fatal(err)
	}
	if left, _, _ := s.ListIndexDir("repo-1", snap, "/a", "", 0); len(left) != 0 {
		t.Fatalf("%d entries after drop", len(left))
	}
}

// TestIndexNodeRoundTrip: what a listing returns is what was stored, path
// included (rebuilt from the folder and the name), at any depth.
func TestIndexNodeRoundTrip(t *testing.T) {
	s, _ := openTest(t)
	snap := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	mtime := time.Date(2026, 12, 7, 12, 30, 1, 123456789, time.UTC)
	deep := "/" + strings.Repeat("level/", 40) + "leaf"
	in := []IndexNode{
		{Path: "/r", Name: "r", Type: "dir", Mode: 0o755 | 1<<31, Mtime: mtime},
		{Path: "/r/f", Name: "f", Type: "file", Size: 1 << 40, Mode: 0o644, Mtime: mtime},
		{Path: "/r/l", Name: "l", Type: "symlink"},
		{Path: deep, Name: "leaf", Type: "file", Size: 7},
	}
	if err := s.PutIndexNodes("repo-1", snap, in); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ListIndexDir("repo-1", snap, "/r", "", 0)
	if err != nil || len(got) != 2 || !reflect.DeepEqual(got[0], in[1]) || !reflect.DeepEqual(got[1], in[2]) {
		t.Fatalf("/r = %+v %v", got, err)
	}
	if got, _, _ := s.ListIndexDir("repo-1", snap, path.Dir(deep), "", 0); len(got) != 1 || !reflect.DeepEqual(got[0], in[3]) {
		t.Fatalf("deep folder = %+v", got)
	}
	if n, err := s.GetIndexNode("repo-1", snap, "/r"); err != nil || !reflect.DeepEqual(n, in[0]) {
		t.Fatalf("node /r = %+v %v", n, err)
	}
	// The entries of a node do not grow with its depth.
	other := "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	if err := s.PutIndexNodes("repo-1", other, in[3:]); err != nil {
		t.Fatal(err)
	}
	if sz, _ := s.IndexSize("repo-1", other); sz > 64 {
		t.Fatalf("a node %d levels deep takes %d bytes", strings.Count(deep, "/"), sz)
	}
}

// TestIndexOfAnOlderFormatIsNotComplete: a console upgraded over an index
// in the first format indexes the snapshot again, and dropping the
// snapshot's index removes the old entries too.
func TestIndexOfAnOlderFormatIsNotComplete(t *testing.T) {
	s, _ := openTest(t)
	snap := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	old := IndexMeta{RepoID: "repo-1", SnapshotID: snap, Complete: true, Nodes: 1}
	oldKey := append(indexFormat1Prefix("repo-1", snap), "/\x00a"...)
	if err := s.update(func(txn *badger.Txn) error {
		if err := setJSON(txn, indexMetaKey("repo-1", snap), old); err != nil {
			return err
		}
		return txn.Set(oldKey, []byte(`{"name":"a","type":"dir","path":"/a"}`))
	}); err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetIndexMeta("repo-1", snap); err != nil || m.Complete {
		t.Fatalf("format-1 meta = %+v %v, want not complete", m, err)
	}
	if err := s.PutIndexMeta(old); err != nil {
		t.Fatal(err)
	}
	if m, err := s.GetIndexMeta("repo-1", snap); err != nil || !m.Complete || m.Format != indexFormat {
		t.Fatalf("meta = %+v %v", m, err)
	}
	err := s.db.View(func(txn *badger.Txn) error { _, err := txn.Get(oldKey); return err })
	if !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("format-1 entry after the new index completed: %v", err)
	}
	// A snapshot forgotten before it was indexed again.
	other := "fedcba9876543210fedcba9876543210fedcba9876543210fedcba9876543210"
	oldKey = append(indexFormat1Prefix("repo-1", other), "/\x00a"...)
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(oldKey, []byte(`{}`)) }); err != nil {
		t.Fatal(err)
	}
	if err := s.DropIndex("repo-1", other); err != nil {
		t.Fatal(err)
	}
	err = s.db.View(func(txn *badger.Txn) error { _, err := txn.Get(oldKey); return err })
	if !errors.Is(err, badger.ErrKeyNotFound) {
		t.Fatalf("format-1 entry after drop: %v", err)
	}
}
