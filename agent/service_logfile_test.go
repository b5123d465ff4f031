package agent

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

func TestLogFileRotatesBySize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state", LogFileName)
	l, err := OpenLogFile(path, 100)
	if err != nil {
		t.Fatal(err)
	}
	line := func(i int) []byte { return fmt.Appendf(nil, "line %02d %s\n", i, strings.Repeat("x", 21)) } // 30 bytes
	for i := range 7 {
		if n, err := l.Write(line(i)); err != nil || n != 30 {
			t.Fatalf("write %d: %d, %v", i, n, err)
		}
	}
	if err := l.Close(); err != nil {
		t.Fatal(err)
	}
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	// 3 lines (90 bytes) fit; the 4th starts a new file; the 7th a third
	// one, whose predecessor replaces the first .1.
	if want := string(line(6)); string(cur) != want {
		t.Errorf("current file = %q, want %q", cur, want)
	}
	if want := string(bytes.Join([][]byte{line(3), line(4), line(5)}, nil)); string(old) != want {
		t.Errorf("rotated file = %q, want %q", old, want)
	}
	if _, err := os.Stat(path + ".2"); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("more than one old file kept: %v", err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("log file mode: %v, %v", st, err)
	}
	if _, err := l.Write([]byte("late\n")); !errors.Is(err, os.ErrClosed) {
		t.Errorf("write after close: %v", err)
	}
}

func TestLogFileAppendsAcrossRestarts(t *testing.T) {
	path := filepath.Join(t.TempDir(), LogFileName)
	for i := range 2 {
		l, err := OpenLogFile(path, 1000)
		if err != nil {
			t.Fatal(err)
		}
		fmt.Fprintf(l, "run %d\n", i)
		l.Close()
	}
	// The size of what is already there counts toward rotation.
	l, err := OpenLogFile(path, 14)
	if err != nil {
		t.Fatal(err)
	}
	fmt.Fprintf(l, "run 2\n")
	l.Close()
	cur, _ := os.ReadFile(path)
	old, _ := os.ReadFile(path + ".1")
	if string(old) != "run 0\nrun 1\n" || string(cur) != "run 2\n" {
		t.Errorf("files: %q and %q", old, cur)
	}
}

func TestLogFileConcurrentWrites(t *testing.T) {
	path := filepath.Join(t.TempDir(), LogFileName)
	l, err := OpenLogFile(path, 4096)
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				fmt.Fprintf(l, "g%d i%03d\n", g, i)
			}
		})
	}
	wg.Wait()
	l.Close()
	var all []byte
	for _, p := range []string{path + ".1", path} {
		b, _ := os.ReadFile(p)
		all = append(all, b...)
	}
	// Every line in the two files is whole: rotation never splits one.
	for l := range strings.SplitSeq(strings.TrimSuffix(string(all), "\n"), "\n") {
		if len(l) != len("g0 i000") {
			t.Fatalf("torn line %q", l)
		}
	}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("no stderr") }

func TestTeeWriterSurvivesAFailingWriter(t *testing.T) {
	var a, b bytes.Buffer
	n, err := TeeWriter{&a, failWriter{}, &b}.Write([]byte("hello\n"))
	if n != 6 || err != nil {
		t.Fatalf("Write = %d, %v", n, err)
	}
	if a.String() != "hello\n" || b.String() != "hello\n" {
		t.Errorf("got %q and %q", a.String(), b.String())
	}
}
