package agent

import (
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
)

// The sample holds at most the files and bytes asked for, and both small
// and large files: over many drills of a tree of 10,000 small files and
// 10 large ones, a large file is almost always in.
func TestSamplerWeightsLargeFiles(t *testing.T) {
	withLarge := 0
	const drills = 200
	for d := 0; d < drills; d++ {
		s := newSampler(50, 64<<20, rand.New(rand.NewPCG(uint64(d), 7)))
		for i := 0; i < 10_000; i++ {
			s.offer(sampleFile{path: fmt.Sprintf("/small/%d", i), size: 1000})
			if i%1000 == 0 {
				s.offer(sampleFile{path: fmt.Sprintf("/large/%d", i), size: 10 << 20})
			}
		}
		s.offer(sampleFile{path: "/huge", size: 1 << 30}) // over the budget alone: never in
		got := s.result()
		var bytes int64
		large, seen := 0, map[string]bool{}
		for _, f := range got {
			if seen[f.path] {
				t.Fatalf("%s twice in the sample", f.path)
			}
			seen[f.path] = true
			bytes += f.size
			if f.size == 10<<20 {
				large++
			}
			if f.path == "/huge" {
				t.Fatal("a file larger than the budget was sampled")
			}
		}
		if len(got) != 50 || bytes > 64<<20 {
			t.Fatalf("drill %d: %d files, %d bytes; want 50 files within 64 MiB", d, len(got), bytes)
		}
		if large > 0 {
			withLarge++
		}
		if large == len(got) {
			t.Fatalf("drill %d: only large files", d)
		}
	}
	// Uniformly, 50 of 10,010 files would hold a large one 5% of the time.
	if withLarge < drills*9/10 {
		t.Errorf("a large file in %d of %d samples, want nearly all", withLarge, drills)
	}
}

func TestEscapePattern(t *testing.T) {
	want := `/a/b\[1]\*\?.txt`
	if runtime.GOOS == "windows" {
		want = `/a/b[1]*?.txt` // '\' separates paths there
	}
	if got := escapePattern(`/a/b[1]*?.txt`); got != want {
		t.Fatalf("escapePattern = %q, want %q", got, want)
	}
}

// A sample larger than the scratch filesystem's free space is refused
// with both figures; one that fits is not.
func TestCheckRoom(t *testing.T) {
	dir := t.TempDir()
	free, err := freeBytes(dir)
	if err != nil || free <= 0 {
		t.Fatalf("free space of %s: %d, %v", dir, free, err)
	}
	err = checkRoom(dir, free, 12)
	if err == nil || !strings.Contains(err.Error(), "not enough room for the drill's sample") || !strings.Contains(err.Error(), "12 files") ||
		!strings.Contains(err.Error(), "are free") {
		t.Fatalf("a sample of all the free space: %v", err)
	}
	if err := checkRoom(dir, 1<<20, 1); err != nil {
		t.Fatalf("a 1 MiB sample: %v", err)
	}
}
