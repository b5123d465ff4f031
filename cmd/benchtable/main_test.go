package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/internal/benchout"
)

// table renders testdata (two benchout files and fleetsim's own report,
// which is skipped) and returns its lines.
func table(t *testing.T, markdown bool) []string {
	t.Helper()
	files, skipped, err := benchout.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	if len(files) != 2 || len(skipped) != 1 || !strings.HasSuffix(skipped[0], "fleetsim.json") {
		t.Fatalf("read %d files, skipped %v", len(files), skipped)
	}
	var buf bytes.Buffer
	if err := render(&buf, files, markdown); err != nil {
		t.Fatal(err)
	}
	return strings.Split(buf.String(), "\n")
}

// line is the one line holding every one of parts (in that order).
func line(t *testing.T, lines []string, parts ...string) string {
	t.Helper()
	var found []string
next:
	for _, l := range lines {
		rest := l
		for _, p := range parts {
			i := strings.Index(rest, p)
			if i < 0 {
				continue next
			}
			rest = rest[i+len(p):]
		}
		found = append(found, l)
	}
	if len(found) != 1 {
		t.Errorf("%d lines with %q, want 1:\n%s", len(found), parts, strings.Join(lines, "\n"))
		return ""
	}
	return found[0]
}

func index(lines []string, s string) int {
	for i, l := range lines {
		if strings.Contains(l, s) {
			return i
		}
	}
	return -1
}

func TestTable(t *testing.T) {
	lines := table(t, false)
	// Figure, measured, reference, target, met/missed, load, command.
	line(t, lines, "every host online stored", "1.52 s", "≤ 10 s", "met (85 % margin)", "0.50→2.25", "[1]")
	line(t, lines, "server RSS after the connect storm", "500 MB", "≤ 400 MB", "MISSED by 25 %", "[1]")
	line(t, lines, "console ingest, QoS-1 progress", "8000 msg/s", "10000 msg/s bare broker", "≥ 75 %", "met at 80 % (6.7 % margin)")
	line(t, lines, "no bare broker (-skip-bare)", "7000 msg/s", "≥ 75 %", "no reference")
	line(t, lines, "extra commands for duplicate fires", "0", "≤ 0", "met", "[1]")
	line(t, lines, "browse request → folder lists", "3 s", "2 s restic ls --json", "≤ 1.2×", "MISSED at 1.5× by 25 %", "0.71→1.02", "[2]")
	line(t, lines, "folder open p95", "4.5 ms", "≤ 20 ms", "met (78 % margin)")
	if l := line(t, lines, "index store bytes per node"); strings.Contains(l, "met") || strings.Contains(l, "MISSED") {
		t.Errorf("a figure without a target is checked: %q", l)
	}
	// Groups in benchout.GroupOrder, though the browse file sorts first.
	if s, b := index(lines, "[simulator]"), index(lines, "[browsing]"); s < 0 || b < s || index(lines, "every host online") < s || index(lines, "folder open") < b {
		t.Errorf("groups out of order:\n%s", strings.Join(lines, "\n"))
	}
	line(t, lines, "[1] go run ./cmd/fleetsim -agents 1000")
	line(t, lines, "[2] RM_BENCH_FILES=20000 go test ./e2e")
	// Every row has the same columns: the measured column starts at the
	// same offset on every figure line.
	col := strings.Index(lines[0], "measured")
	for _, l := range lines[2:] {
		if strings.HasPrefix(l, "  ") && len([]rune(l)) > col {
			if r := []rune(l); r[col-1] != ' ' || r[col] == ' ' {
				t.Errorf("measured column not at %d: %q", col, l)
			}
		}
	}
}

func TestMarkdown(t *testing.T) {
	lines := table(t, true)
	if lines[0] != "| figure | measured | reference (same run) | target | met/missed | load | cmd |" {
		t.Errorf("header %q", lines[0])
	}
	line(t, lines, "| **simulator** |")
	// A | in a cell is escaped.
	line(t, lines, `| console ingest \| no bare broker (-skip-bare) | 7000 msg/s |  | ≥ 75 % | no reference |  | [1] |`)
	line(t, lines, "2. `RM_BENCH_FILES=20000 go test ./e2e")
}
