package benchout

import (
	"os"
	"path/filepath"
	"testing"
)

func TestCheck(t *testing.T) {
	ref := &Reference{What: "restic ls", Value: 2, Unit: "s"}
	for _, c := range []struct {
		name     string
		f        Figure
		met, ok  bool
		compared float64
		by       float64
	}{
		{"no target", Figure{Value: 1}, false, false, 0, 0},
		{"at most, met", Figure{Value: 8, Target: AtMost(10, "s")}, true, true, 8, -0.2},
		{"at most, missed", Figure{Value: 15, Target: AtMost(10, "s")}, false, true, 15, 0.5},
		{"at most, on the bound", Figure{Value: 10, Target: AtMost(10, "s")}, true, true, 10, 0},
		{"at least, missed", Figure{Value: 60, Target: AtLeast(75, "%")}, false, true, 60, 0.2},
		{"times, missed", Figure{Value: 3, Reference: ref, Target: AtMostTimes(1.2)}, false, true, 1.5, 0.25},
		{"times, met", Figure{Value: 2, Reference: ref, Target: AtMostTimes(1.2)}, true, true, 1, -1.0 / 6},
		{"percent, met", Figure{Value: 1.6, Reference: ref, Target: AtLeastPercent(75)}, true, true, 80, -1.0 / 15},
		{"relative without reference", Figure{Value: 2, Target: AtMostTimes(1.2)}, false, false, 0, 0},
	} {
		met, compared, by, ok := c.f.Check()
		if met != c.met || ok != c.ok || !near(compared, c.compared) || !near(by, c.by) {
			t.Errorf("%s: Check() = %v, %v, %v, %v; want %v, %v, %v, %v", c.name, met, compared, by, ok, c.met, c.compared, c.by, c.ok)
		}
	}
}

func near(a, b float64) bool { return a-b < 1e-9 && b-a < 1e-9 }

func TestTargetString(t *testing.T) {
	for tg, want := range map[*Target]string{
		AtMost(10, "s"):     "≤ 10 s",
		AtLeastPercent(75):  "≥ 75 %",
		AtMostTimes(1.2):    "≤ 1.2×",
		AtMost(400, "MB"):   "≤ 400 MB",
		AtMost(0, ""):       "≤ 0",
		AtMost(0.25, "ms"):  "≤ 0.25 ms",
		AtLeast(12.5, "/s"): "≥ 12.5 /s",
	} {
		if got := tg.String(); got != want {
			t.Errorf("%+v: %q, want %q", *tg, got, want)
		}
	}
}

func TestWriteRead(t *testing.T) {
	dir := t.TempDir()
	t.Setenv(EnvDir, "")
	if err := Write("x", []Figure{{ID: "a"}}); err != nil {
		t.Fatal(err)
	}
	t.Setenv(EnvDir, dir)
	if err := Write("one", []Figure{{ID: "a", Value: 1.5, Unit: "s", Target: AtMost(2, "s")}}); err != nil {
		t.Fatal(err)
	}
	// A second write of the same name replaces the first.
	if err := Write("one", []Figure{{ID: "b", Value: 2}}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "other.json"), []byte(`{"agents": 10}`), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := Write("../escape", nil); err == nil {
		t.Error("a name with a slash was written")
	}
	files, skipped, err := ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 1 || files[0].Name != "one" || len(files[0].Figures) != 1 || files[0].Figures[0].ID != "b" {
		t.Errorf("files %+v", files)
	}
	if len(skipped) != 1 || filepath.Base(skipped[0]) != "other.json" {
		t.Errorf("skipped %v", skipped)
	}
	left, _ := filepath.Glob(filepath.Join(dir, ".*"))
	if len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

func TestGoTest(t *testing.T) {
	t.Setenv("RM_BENCH_FILES", "20000")
	os.Unsetenv("RM_UNSET_FOR_TEST")
	got := GoTest("./e2e", "BenchmarkSnapshotBrowse", "1x", "RM_UNSET_FOR_TEST", "RM_BENCH_FILES")
	want := "RM_BENCH_FILES=20000 go test ./e2e -run '^$' -bench 'BenchmarkSnapshotBrowse' -benchtime 1x"
	if got != want {
		t.Errorf("got %q\nwant %q", got, want)
	}
}

func TestNum(t *testing.T) {
	for v, want := range map[float64]string{0: "0", 1.2: "1.2", 5.98: "5.98", 0.0001234: "0.000123", 12.34: "12.3", 123.4: "123", 10000: "10000", 0.01234: "0.0123", -3.5: "-3.5"} {
		if got := Num(v); got != want {
			t.Errorf("Num(%v) = %q, want %q", v, got, want)
		}
	}
}

func TestNaturalLess(t *testing.T) {
	sorted := []string{"a", "browse-deep-200000", "browse-deep-1000000", "browse-wide-20000", "listjobs-5000", "listjobs-05001", "listjobs-10000", "listjobs-10000b", "listjobs-50000"}
	for i := range sorted {
		for j := range sorted {
			if got := naturalLess(sorted[i], sorted[j]); got != (i < j) {
				t.Errorf("naturalLess(%q, %q) = %v", sorted[i], sorted[j], got)
			}
		}
	}
}
