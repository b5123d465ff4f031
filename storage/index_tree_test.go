package storage

import (
	"errors"
	"testing"
)

// TestIndexTreeSize: a folder's download size counts its files at every
// depth, and nothing of a sibling whose name it prefixes (/a vs /ab).
func TestIndexTreeSize(t *testing.T) {
	s, _ := openTest(t)
	snap := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	nodes := []IndexNode{
		{Path: "/a", Name: "a", Type: "dir"},
		{Path: "/a/f", Name: "f", Type: "file", Size: 10},
		{Path: "/a/x", Name: "x", Type: "dir"},
		{Path: "/a/x/g", Name: "g", Type: "file", Size: 100},
		{Path: "/a/x/l", Name: "l", Type: "symlink"},
		{Path: "/ab", Name: "ab", Type: "dir"},
		{Path: "/ab/h", Name: "h", Type: "file", Size: 1000},
	}
	if err := s.PutIndexNodes("repo-1", snap, nodes); err != nil {
		t.Fatal(err)
	}
	for dir, want := range map[string][2]uint64{"/a": {2, 110}, "/a/x": {1, 100}, "/ab": {1, 1000}, "/": {3, 1110}, "/a/f": {0, 0}} {
		files, bytes, err := s.IndexTreeSize("repo-1", snap, dir)
		if err != nil || uint64(files) != want[0] || bytes != want[1] {
			t.Errorf("%s: %d files, %d bytes, %v; want %v", dir, files, bytes, err, want)
		}
	}
	n, err := s.GetIndexNode("repo-1", snap, "/a/x/g")
	if err != nil || n.Type != "file" || n.Size != 100 {
		t.Errorf("node /a/x/g: %+v %v", n, err)
	}
	if n, err := s.GetIndexNode("repo-1", snap, "/"); err != nil || n.Type != "dir" {
		t.Errorf("root: %+v %v", n, err)
	}
	if _, err := s.GetIndexNode("repo-1", snap, "/a/nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing node: %v", err)
	}
}
