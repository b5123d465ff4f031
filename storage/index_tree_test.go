package storage

import (
	"errors"
	"fmt"
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

// BenchmarkIndexTreeSize sums a 200,000-file snapshot from its root (the
// size shown before downloading the whole snapshot).
func BenchmarkIndexTreeSize(b *testing.B) {
	s, _ := openTest(b)
	snap := "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"
	const files = 200_000
	nodes := make([]IndexNode, 0, 10_000)
	for i := range files {
		dir := fmt.Sprintf("/home/u%02d/d%03d", i%50, i%997)
		nodes = append(nodes, IndexNode{Path: fmt.Sprintf("%s/f%06d", dir, i), Name: fmt.Sprintf("f%06d", i), Type: "file", Size: 100})
		if len(nodes) == cap(nodes) {
			if err := s.PutIndexNodes("repo-1", snap, nodes); err != nil {
				b.Fatal(err)
			}
			nodes = nodes[:0]
		}
	}
	b.ResetTimer()
	for range b.N {
		n, size, err := s.IndexTreeSize("repo-1", snap, "/")
		if err != nil || n != files || size != files*100 {
			b.Fatalf("%d files, %d bytes, %v", n, size, err)
		}
	}
}
