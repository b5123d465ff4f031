package runner

import (
	"bytes"
	"encoding/json"
	"strings"
	"sync"
	"time"
	"unicode/utf8"
)

const (
	maxLine      = 1 << 20 // longest stdout/stderr line kept; the rest of a longer line is dropped
	tailSize     = 4 << 10 // Result.StderrTail
	maxErrors    = 20      // restic error messages kept (all are counted)
	maxMessages  = 32      // distinct other message types kept
	maxErrorText = 512     // longest Result.Error built from restic's text
)

// lineWriter is an io.Writer that splits what it is given into lines and
// hands each to fn without the line end. A line longer than maxLine is cut:
// fn gets its first maxLine bytes with truncated set. fn must not keep line.
type lineWriter struct {
	fn       func(line []byte, truncated bool)
	max      int
	buf      []byte
	skipping bool // dropping the rest of an over-long line
}

func newLineWriter(fn func([]byte, bool)) *lineWriter {
	return &lineWriter{fn: fn, max: maxLine}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	n := len(p)
	for len(p) > 0 {
		i := bytes.IndexByte(p, '\n')
		chunk := p
		if i >= 0 {
			chunk, p = p[:i], p[i+1:]
		} else {
			p = nil
		}
		if !w.skipping {
			if room := w.max - len(w.buf); len(chunk) > room {
				chunk = chunk[:room]
				w.skipping = true
			}
			w.buf = append(w.buf, chunk...)
		}
		if i >= 0 {
			w.emit()
		}
	}
	return n, nil
}

// flush hands over a last line that had no line end.
func (w *lineWriter) flush() {
	if len(w.buf) > 0 || w.skipping {
		w.emit()
	}
}

func (w *lineWriter) emit() {
	line := bytes.TrimSuffix(w.buf, []byte("\r"))
	w.fn(line, w.skipping)
	w.buf = w.buf[:0]
	w.skipping = false
}

// lineKind is what parseLine found in one line of restic's output.
type lineKind int

const (
	lineText lineKind = iota // not JSON: plain text, kept in the tail
	lineJSON                 // a JSON value; msgType is its message_type, if any
)

// parseLine classifies one line of restic's output. Anything that is not a
// complete JSON value is text.
func parseLine(line []byte) (kind lineKind, msgType string) {
	t := bytes.TrimSpace(line)
	if len(t) == 0 || (t[0] != '{' && t[0] != '[') || !json.Valid(t) {
		return lineText, ""
	}
	if t[0] == '{' {
		var m struct {
			MessageType string `json:"message_type"`
		}
		if json.Unmarshal(t, &m) != nil {
			// e.g. message_type that is not a string: JSON, but no message.
			return lineJSON, ""
		}
		return lineJSON, m.MessageType
	}
	return lineJSON, ""
}

// statusMsg is restic's status message (backup; restore has a subset).
type statusMsg struct {
	PercentDone      float64  `json:"percent_done"`
	SecondsElapsed   float64  `json:"seconds_elapsed"`
	SecondsRemaining float64  `json:"seconds_remaining"`
	TotalFiles       uint64   `json:"total_files"`
	FilesDone        uint64   `json:"files_done"`
	TotalBytes       uint64   `json:"total_bytes"`
	BytesDone        uint64   `json:"bytes_done"`
	ErrorCount       uint64   `json:"error_count"`
	CurrentFiles     []string `json:"current_files"`
	// restore's status (0.16+) counts these instead of files/bytes_done.
	FilesRestored uint64 `json:"files_restored"`
	BytesRestored uint64 `json:"bytes_restored"`
}

func decodeStatus(line []byte) (Progress, bool) {
	var s statusMsg
	if json.Unmarshal(line, &s) != nil {
		return Progress{}, false
	}
	if s.FilesDone == 0 && s.BytesDone == 0 {
		s.FilesDone, s.BytesDone = s.FilesRestored, s.BytesRestored
	}
	pct := s.PercentDone * 100
	switch {
	case pct < 0 || pct != pct:
		pct = 0
	case pct > 100:
		pct = 100
	}
	return Progress{
		Percent:          pct,
		SecondsElapsed:   s.SecondsElapsed,
		SecondsRemaining: s.SecondsRemaining,
		TotalFiles:       s.TotalFiles,
		FilesDone:        s.FilesDone,
		TotalBytes:       s.TotalBytes,
		BytesDone:        s.BytesDone,
		CurrentFiles:     s.CurrentFiles,
		ErrorCount:       s.ErrorCount,
	}, true
}

// exitErrorMsg is restic's last stderr line since 0.18.0.
type exitErrorMsg struct {
	Code    int    `json:"code"`
	Message string `json:"message"`
}

// errorMsg is restic's JSON error line (backup, restore). Before 0.17.1
// "error" was always {}. check (0.18) has the text in "message".
type errorMsg struct {
	Error struct {
		Message string `json:"message"`
	} `json:"error"`
	During  string `json:"during"`
	Item    string `json:"item"`
	Message string `json:"message"`
}

// output collects what restic printed during one run. stdoutLine and
// stderrLine are called from two goroutines; progress is delivered from the
// stdout one only, so OnProgress calls never overlap.
type output struct {
	sec *redactor

	// stdout goroutine only (and the caller after Wait).
	progress *throttle // nil: the operation reports none
	// parser, if set, sees every line first (see parser).
	parser parser

	mu         sync.Mutex
	summary    json.RawMessage
	messages   map[string]json.RawMessage // last stdout line of each other message_type
	untyped    json.RawMessage            // last stdout JSON value without message_type
	errors     []string                   // first maxErrors error messages
	errorCount int
	exitErr    *exitErrorMsg
	lastText   string // last plain-text stderr line
	lastFatal  string // last plain-text stderr line starting "Fatal:" (restic < 0.18)
	stdoutCut  bool   // a stdout line was longer than the line limit
	// cause and causeText: the first stderr line that tells a missing
	// repository, a lock held by another process or a wrong password
	// (restic < 0.17 exits 1 for all three).
	cause, causeText string
	// deleteRefused: the first stderr line telling that the backend refused
	// a deletion (an append-only rest-server answers 403). restic 0.18
	// still exits 0 after it.
	deleteRefused string
	tail          tailBuffer
}

func newOutput(sec *redactor) *output {
	return &output{sec: sec, messages: map[string]json.RawMessage{}, tail: tailBuffer{max: tailSize}}
}

func (o *output) stdoutLine(line []byte, truncated bool) {
	if raw, ok := o.parser.(rawStdout); ok && !truncated && raw.stdoutRaw(line) {
		return
	}
	kind, typ := lineText, ""
	if !truncated {
		kind, typ = parseLine(line)
	}
	if kind == lineText && o.progress != nil {
		// Subcommands without JSON output (copy) print their progress as text.
		if tp, ok := o.parser.(textProgress); ok {
			if p, ok := tp.textStatus(line); ok {
				o.progress.status(p)
				return
			}
		}
	}
	if o.parser != nil && o.parser.stdout(line, kind, typ) {
		return
	}
	if kind == lineText {
		o.mu.Lock()
		o.addTail(line, truncated)
		if truncated {
			o.stdoutCut = true
		}
		o.mu.Unlock()
		return
	}
	switch typ {
	case "status":
		if o.progress != nil {
			if p, ok := decodeStatus(line); ok {
				o.progress.status(p)
			}
		}
		return
	case "verbose_status":
		return
	case "summary":
		if o.progress != nil {
			o.progress.flush()
		}
	}
	o.mu.Lock()
	defer o.mu.Unlock()
	switch typ {
	case "summary":
		o.summary = json.RawMessage(bytes.Clone(bytes.TrimSpace(line)))
	case "error", "exit_error":
		o.addTail(line, false)
		o.noteJSONError(typ, line)
	case "":
		o.untyped = json.RawMessage(bytes.Clone(bytes.TrimSpace(line)))
	default:
		if _, ok := o.messages[typ]; ok || len(o.messages) < maxMessages {
			o.messages[typ] = json.RawMessage(bytes.Clone(bytes.TrimSpace(line)))
		}
	}
}

func (o *output) stderrLine(line []byte, truncated bool) {
	kind, typ := lineText, ""
	if !truncated {
		kind, typ = parseLine(line)
	}
	o.mu.Lock()
	o.addTail(line, truncated)
	if kind == lineJSON {
		o.noteJSONError(typ, line)
	} else if text := strings.TrimSpace(cleanText(line)); text != "" {
		o.lastText = text
		if strings.HasPrefix(text, "Fatal:") {
			o.lastFatal = text
		}
		if o.cause == "" {
			if c := textCause(text); c != "" {
				o.cause, o.causeText = c, text
			}
		}
		if o.deleteRefused == "" && (strings.Contains(text, "unable to remove") || strings.Contains(text, "(403)")) {
			o.deleteRefused = text
		}
	}
	o.mu.Unlock()
	if o.parser != nil {
		o.parser.stderr(line, kind, typ)
	}
}

// textCause recognises restic's messages for a missing repository, a
// locked one and a wrong password: restic before 0.17 exits 1 for all.
func textCause(text string) string {
	switch {
	case strings.Contains(text, "Is there a repository at the following location?"):
		return CauseNoRepository
	case strings.Contains(text, "repository is already locked"):
		return CauseLocked
	case strings.Contains(text, "wrong password or no key found"):
		return CauseWrongPassword
	}
	return ""
}

// noteJSONError records error and exit_error messages; o.mu is held.
func (o *output) noteJSONError(typ string, line []byte) {
	switch typ {
	case "error":
		o.errorCount++
		if len(o.errors) >= maxErrors {
			return
		}
		var m errorMsg
		if json.Unmarshal(line, &m) != nil {
			return
		}
		msg := m.Error.Message
		if msg == "" {
			msg = strings.TrimSpace(m.Message) // check
		}
		if msg == "" && m.Item != "" {
			msg = m.Item // restic < 0.17.1
		}
		if msg != "" {
			o.errors = append(o.errors, msg)
		}
	case "exit_error":
		var m exitErrorMsg
		if json.Unmarshal(line, &m) == nil {
			o.exitErr = &m
		}
	}
}

// addTail keeps line in the tail, redacted; o.mu is held.
func (o *output) addTail(line []byte, truncated bool) {
	s := o.sec.redact(cleanText(line))
	if truncated {
		s += " [line truncated]"
	}
	o.tail.add(s)
}

func (o *output) message(typ string) json.RawMessage {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.messages[typ]
}

func (o *output) summaryAndID() (summary json.RawMessage, snapshotID string) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.summary == nil {
		return nil, ""
	}
	var s struct {
		SnapshotID string `json:"snapshot_id"`
	}
	_ = json.Unmarshal(o.summary, &s)
	return o.summary, s.SnapshotID
}

// throttle delivers at most one Progress per interval, and on flush the last
// one it held back.
type throttle struct {
	interval time.Duration
	now      func() time.Time
	deliver  func(Progress)

	sent    bool
	last    time.Time
	pending *Progress
}

// status delivers p when it is due: when 90% of the interval has passed
// since the last delivery. (restic's ticks come at the same rate as the
// interval by default, and their jitter would otherwise drop every other
// one.)
func (t *throttle) status(p Progress) {
	now := t.now()
	if t.sent && now.Sub(t.last) < t.interval-t.interval/10 {
		t.pending = &p
		return
	}
	t.sent, t.last, t.pending = true, now, nil
	t.deliver(p)
}

func (t *throttle) flush() {
	if t.pending == nil {
		return
	}
	p := *t.pending
	t.sent, t.last, t.pending = true, t.now(), nil
	t.deliver(p)
}

// tailBuffer keeps the last max bytes of the lines added, cut at a line start
// where possible.
type tailBuffer struct {
	max int
	b   []byte
}

func (t *tailBuffer) add(line string) {
	if len(line) >= t.max {
		line = line[len(line)-t.max+1:]
	}
	t.b = append(t.b, line...)
	t.b = append(t.b, '\n')
	if over := len(t.b) - t.max; over > 0 {
		cut := over
		if i := bytes.IndexByte(t.b[over:], '\n'); i >= 0 && i+1 < len(t.b)-over {
			cut = over + i + 1
		}
		for cut < len(t.b) && !utf8.RuneStart(t.b[cut]) {
			cut++
		}
		t.b = append(t.b[:0], t.b[cut:]...)
	}
}

func (t *tailBuffer) String() string {
	return strings.ToValidUTF8(string(t.b), "\uFFFD")
}

// cleanText drops terminal escape sequences (restic prints "\x1b[2K" before
// "signal interrupt received") and other control characters but tab.
func cleanText(line []byte) string {
	var sb strings.Builder
	for i := 0; i < len(line); i++ {
		c := line[i]
		switch {
		case c == 0x1b:
			// CSI: ESC [ parameters… final byte in 0x40–0x7e; other
			// sequences: ESC, intermediate bytes 0x20–0x2f, final byte.
			if i+1 < len(line) && line[i+1] == '[' {
				i += 2
				for i < len(line) && (line[i] < 0x40 || line[i] > 0x7e) {
					i++
				}
			} else {
				i++
				for i < len(line) && line[i] >= 0x20 && line[i] <= 0x2f {
					i++
				}
			}
		case c < 0x20 && c != '\t', c == 0x7f:
		default:
			sb.WriteByte(c)
		}
	}
	return sb.String()
}
