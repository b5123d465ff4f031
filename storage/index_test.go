package storage

import (
	"fmt"
	"testing"
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
