package runner

import (
	"bytes"
	"context"
	"encoding/json"
	"math/rand/v2"
	"os"
	"strings"
	"testing"
	"time"
	"unicode/utf8"
)

func readFixture(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// fakeClock is a throttle clock the test moves by hand.
type fakeClock struct{ t time.Time }

func (c *fakeClock) now() time.Time { return c.t }

// feed writes b to w in chunks of random sizes.
func feed(w *lineWriter, b []byte, rng *rand.Rand) {
	for len(b) > 0 {
		n := 1 + rng.IntN(200)
		if n > len(b) {
			n = len(b)
		}
		w.Write(b[:n])
		b = b[n:]
	}
	w.flush()
}

func TestParseFixtureBackup(t *testing.T) {
	stdout := readFixture(t, "backup-0.18.1.stdout.jsonl")
	stderr := readFixture(t, "backup-0.18.1.stderr.jsonl")

	for seed := uint64(0); seed < 5; seed++ {
		rng := rand.New(rand.NewPCG(seed, 1))
		out := newOutput(newRedactor(Repo{URL: "/repo", Password: "secret"}))
		var got []Progress
		out.progress = &throttle{interval: 0, now: time.Now, deliver: func(p Progress) { got = append(got, p) }}
		feed(newLineWriter(out.stdoutLine), stdout, rng)
		feed(newLineWriter(out.stderrLine), stderr, rng)

		if len(got) != 4 {
			t.Fatalf("seed %d: %d progress messages, want 4", seed, len(got))
		}
		p := got[0]
		if p.Percent < 19.70 || p.Percent > 19.71 || p.TotalFiles != 32 || p.FilesDone != 30 ||
			p.TotalBytes != 62914791 || p.BytesDone != 12400036 || p.ErrorCount != 1 ||
			len(p.CurrentFiles) != 1 || p.CurrentFiles[0] != "/src/big.bin" {
			t.Errorf("first progress = %+v", p)
		}

		summary, id := out.summaryAndID()
		wantSummary := strings.Split(string(stdout), "\n")[5]
		if string(summary) != wantSummary {
			t.Errorf("summary not verbatim:\n got %s\nwant %s", summary, wantSummary)
		}
		if !validSnapshotID(id) || len(id) != 64 {
			t.Errorf("snapshot id %q", id)
		}
		tail := out.tail.String()
		for _, want := range []string{"reading repository password from stdin", "/proc/self/mem: input/output error", `"exit_error"`} {
			if !strings.Contains(tail, want) {
				t.Errorf("tail lacks %q:\n%s", want, tail)
			}
		}
		if strings.Contains(tail, `"status"`) || strings.Contains(tail, `"summary"`) {
			t.Errorf("tail holds stdout JSON:\n%s", tail)
		}

		res := outcome(context.Background(), &Spec{Kind: KindBackup}, opBackup{}, out, 3, false, Result{})
		if res.Status != StatusPartial || res.SnapshotID != id || res.ExitCode != 3 || string(res.Summary) != wantSummary {
			t.Errorf("outcome = %+v", res)
		}
		if want := "at least one source file could not be read: failed to save /proc/self/mem: read /proc/self/mem: input/output error"; res.Error != want {
			t.Errorf("Error = %q, want %q", res.Error, want)
		}
	}
}

func TestThrottle(t *testing.T) {
	stdout := readFixture(t, "backup-0.18.1.stdout.jsonl")
	lines := bytes.Split(bytes.TrimSpace(stdout), []byte("\n"))

	for _, tc := range []struct {
		interval time.Duration
		want     []float64 // percent of the delivered messages, rounded down
	}{
		// Statuses at 200, 300, 400, 500 ms, the summary at 600 ms.
		{0, []float64{19, 50, 70, 95}},
		// 300 and 400 held back, 500 sent: nothing left for the summary.
		{250 * time.Millisecond, []float64{19, 95}},
		// 300 held back, 400 sent, 500 held back and sent before the summary.
		{150 * time.Millisecond, []float64{19, 70, 95}},
		// Only the first is due; the last is sent before the summary.
		{350 * time.Millisecond, []float64{19, 95}},
		{time.Hour, []float64{19, 95}},
	} {
		clock := &fakeClock{t: time.Unix(1000, 0)}
		out := newOutput(newRedactor(Repo{}))
		var got []float64
		sawSummary := false
		out.progress = &throttle{interval: tc.interval, now: clock.now, deliver: func(p Progress) {
			if s, _ := out.summaryAndID(); s != nil {
				sawSummary = true
			}
			got = append(got, float64(int(p.Percent)))
		}}
		for _, l := range lines {
			clock.t = clock.t.Add(100 * time.Millisecond)
			out.stdoutLine(l, false)
		}
		if sawSummary {
			t.Errorf("interval %v: progress delivered after the summary was stored", tc.interval)
		}
		if len(got) != len(tc.want) {
			t.Errorf("interval %v: delivered %v, want %v", tc.interval, got, tc.want)
			continue
		}
		for i := range got {
			if got[i] != tc.want[i] {
				t.Errorf("interval %v: delivered %v, want %v", tc.interval, got, tc.want)
				break
			}
		}
	}
}

func TestLineWriter(t *testing.T) {
	var lines []string
	var truncs []bool
	w := &lineWriter{max: 8, fn: func(l []byte, tr bool) {
		lines = append(lines, string(l))
		truncs = append(truncs, tr)
	}}
	w.Write([]byte("ab\r\ncd"))
	w.Write([]byte("ef\n0123456789abc"))
	w.Write([]byte("def\nlast"))
	w.flush()
	want := []string{"ab", "cdef", "01234567", "last"}
	if strings.Join(lines, "|") != strings.Join(want, "|") {
		t.Fatalf("lines %q, want %q", lines, want)
	}
	if truncs[0] || truncs[1] || !truncs[2] || truncs[3] {
		t.Fatalf("truncated flags %v", truncs)
	}
}

func TestTailBuffer(t *testing.T) {
	tb := tailBuffer{max: 32}
	for i := 0; i < 20; i++ {
		tb.add("line " + strings.Repeat("x", i%5))
	}
	s := tb.String()
	if len(s) > 32 || !strings.HasSuffix(s, "line xxxx\n") || !strings.HasPrefix(s, "line") {
		t.Fatalf("tail %q", s)
	}
	tb.add(strings.Repeat("é", 40) + "END")
	s = tb.String()
	if len(s) > 32 || !strings.HasSuffix(s, "END\n") || !utf8.ValidString(s) {
		t.Fatalf("tail %q", s)
	}
}

func TestCleanText(t *testing.T) {
	got := cleanText([]byte("\x1b[2Ksignal interrupt received, cleaning up\r\x00\tx\x1b(B"))
	if got != "signal interrupt received, cleaning up\tx" {
		t.Fatalf("cleanText = %q", got)
	}
}

// FuzzParseLine feeds arbitrary lines through everything that reads
// restic's output.
func FuzzParseLine(f *testing.F) {
	for _, name := range []string{"backup-0.18.1.stdout.jsonl", "backup-0.18.1.stderr.jsonl"} {
		for _, l := range bytes.Split(readFixture(f, name), []byte("\n")) {
			f.Add(l)
		}
	}
	for _, s := range []string{
		`{"message_type":"initialized","id":"x","repository":1}`,
		`{"message_type":"status","percent_done":-1e308}`,
		`{"message_type":"status","percent_done":1e308,"total_files":-1}`,
		`{"message_type":5}`, `[1,2]`, `{`, "\x1b[", "\x1b", `{"message_type":"error","error":{}}`,
		`{"message_type":"exit_error","code":"x"}`, `{"message_type":"summary","snapshot_id":7}`,
		"\xff\xfe secret", "",
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, line []byte) {
		parseLine(line)
		out := newOutput(newRedactor(Repo{URL: "rest:http://u:pass-word@h/", Password: "secret"}))
		out.progress = &throttle{interval: time.Millisecond, now: time.Now, deliver: func(p Progress) {
			if !(p.Percent >= 0 && p.Percent <= 100) {
				t.Fatalf("percent %v", p.Percent)
			}
		}}
		out.stdoutLine(line, false)
		out.stderrLine(line, false)
		out.stdoutLine(line, true)
		w := newLineWriter(out.stderrLine)
		w.Write(line)
		w.flush()
		for _, code := range []int{0, 1, 3, 12} {
			for _, op := range operations {
				res := outcome(context.Background(), &Spec{}, op, out, code, false, Result{})
				if res.Status == "" {
					t.Fatalf("no status for code %d", code)
				}
			}
		}
		tail := out.tail.String()
		if len(tail) > tailSize || !utf8.ValidString(tail) {
			t.Fatalf("tail of %d bytes, valid %v", len(tail), utf8.ValidString(tail))
		}
		if strings.Contains(tail, "secret") || strings.Contains(tail, "pass-word") {
			t.Fatalf("secret in tail %q", tail)
		}
		var v any
		if out.summary != nil && json.Unmarshal(out.summary, &v) != nil {
			t.Fatalf("summary is not JSON: %q", out.summary)
		}
	})
}
