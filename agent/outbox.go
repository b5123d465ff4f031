package agent

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// outbox is a durable FIFO of messages the console must receive (results,
// expiry notices). A message leaves it only once the broker acknowledged it,
// so it survives disconnects, agent restarts and broker restarts.
type outbox struct {
	dir  string
	mu   sync.Mutex
	next uint64
	// mem keeps, in order after those on disk, messages that could not be
	// written (a full or failing disk): they are still delivered, and only
	// an agent restart before that loses them.
	mem    []outMsg
	notify chan struct{}
}

type outMsg struct {
	Topic   string          `json:"topic"`
	Payload json.RawMessage `json:"payload"`
	Retain  bool            `json:"retain,omitempty"`

	name string
}

func openOutbox(dir string) (*outbox, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	o := &outbox{dir: dir, notify: make(chan struct{}, 1)}
	names, err := o.names()
	if err != nil {
		return nil, err
	}
	if n := len(names); n > 0 {
		last, _ := strconv.ParseUint(strings.TrimSuffix(names[n-1], ".json"), 10, 64)
		o.next = last + 1
	}
	return o, nil
}

func (o *outbox) names() ([]string, error) {
	ents, err := os.ReadDir(o.dir)
	if err != nil {
		return nil, fmt.Errorf("outbox: %w", err)
	}
	var names []string
	for _, e := range ents {
		if n := e.Name(); strings.HasSuffix(n, ".json") && !strings.HasPrefix(n, ".") {
			names = append(names, n)
		}
	}
	// Zero-padded sequence numbers sort in order of enqueueing.
	sort.Strings(names)
	return names, nil
}

// Put appends a message durably.
func (o *outbox) Put(topic string, payload []byte, retain bool) error {
	b, err := encodeOutMsg(topic, payload, retain)
	if err != nil {
		return err
	}
	o.mu.Lock()
	name := fmt.Sprintf("%020d.json", o.next)
	o.next++
	if len(o.mem) == 0 {
		err = writeFileAtomic(filepath.Join(o.dir, name), b, 0o600)
	}
	if len(o.mem) > 0 || err != nil {
		o.mem = append(o.mem, outMsg{Topic: topic, Payload: payload, Retain: retain})
	}
	o.mu.Unlock()
	select {
	case o.notify <- struct{}{}:
	default:
	}
	return nil
}

// A queued message's file is json.Marshal of its outMsg: the topic, the
// payload as it is and retain. encodeOutMsg and decodeOutMsg write and read
// that shape without reading the payload: every payload is a wire.Encode
// output already, and index chunks are 500 KB, hundreds a snapshot
// (json.Marshal compacted each and Unmarshal scanned it twice, a quarter of
// the agent's CPU while indexing). A payload that is not valid JSON is the
// console's to refuse, as one a broken agent sent.
func encodeOutMsg(topic string, payload []byte, retain bool) ([]byte, error) {
	if len(payload) == 0 || payload[0] != '{' || payload[len(payload)-1] != '}' {
		return json.Marshal(outMsg{Topic: topic, Payload: payload, Retain: retain})
	}
	t, err := json.Marshal(topic)
	if err != nil {
		return nil, err
	}
	b := make([]byte, 0, len(payload)+len(t)+len(outHead)+len(outPayload)+len(outRetain)+1)
	b = append(append(append(append(b, outHead...), t...), outPayload...), payload...)
	if retain {
		b = append(b, outRetain...)
	}
	return append(b, '}'), nil
}

const (
	outHead    = `{"topic":`
	outPayload = `,"payload":`
	outRetain  = `,"retain":true`
)

// decodeOutMsg reads what encodeOutMsg (or json.Marshal) wrote; a file of
// another shape is read by json.Unmarshal.
func decodeOutMsg(b []byte) (outMsg, error) {
	var m outMsg
	rest, ok := bytes.CutPrefix(b, []byte(outHead))
	i := bytes.Index(rest, []byte(outPayload))
	if !ok || i < 2 || rest[0] != '"' || bytes.IndexByte(rest[1:i-1], '"') >= 0 || bytes.IndexByte(rest[1:i-1], '\\') >= 0 ||
		json.Unmarshal(rest[:i], &m.Topic) != nil {
		err := json.Unmarshal(b, &m)
		return m, err
	}
	payload, ok := bytes.CutSuffix(rest[i+len(outPayload):], []byte("}"))
	if p, r := bytes.CutSuffix(payload, []byte(outRetain)); r {
		payload, m.Retain = p, true
	}
	if !ok || len(payload) < 2 || payload[0] != '{' || payload[len(payload)-1] != '}' {
		m = outMsg{}
		err := json.Unmarshal(b, &m)
		return m, err
	}
	m.Payload = payload
	return m, nil
}

// Peek returns the oldest message, or ok=false when empty. A file that cannot
// be parsed is set aside (renamed .bad) rather than blocking the queue.
func (o *outbox) Peek() (m outMsg, ok bool, err error) {
	for {
		names, err := o.names()
		if err != nil {
			return outMsg{}, false, err
		}
		if len(names) == 0 {
			// Those on disk are older: only then the ones kept in memory.
			o.mu.Lock()
			defer o.mu.Unlock()
			if len(o.mem) == 0 {
				return outMsg{}, false, nil
			}
			return o.mem[0], true, nil
		}
		p := filepath.Join(o.dir, names[0])
		b, err := os.ReadFile(p)
		if err == nil {
			m, err = decodeOutMsg(b)
		}
		if err != nil {
			_ = os.Rename(p, p+".bad")
			continue
		}
		m.name = names[0]
		return m, true, nil
	}
}

// PeekN returns up to n of the oldest messages, in order (those kept in
// memory only when none is on disk, one at a time).
func (o *outbox) PeekN(n int) ([]outMsg, error) {
	var out []outMsg
	for len(out) == 0 {
		names, err := o.names()
		if err != nil {
			return nil, err
		}
		if len(names) == 0 {
			m, ok, err := o.Peek()
			if !ok || err != nil {
				return nil, err
			}
			return []outMsg{m}, nil
		}
		for _, name := range names[:min(n, len(names))] {
			p := filepath.Join(o.dir, name)
			b, err := os.ReadFile(p)
			var m outMsg
			if err == nil {
				m, err = decodeOutMsg(b)
			}
			if err != nil {
				if len(out) > 0 {
					break // the next call sets it aside
				}
				_ = os.Rename(p, p+".bad")
				break
			}
			m.name = name
			out = append(out, m)
		}
	}
	return out, nil
}

// Remove deletes a delivered message.
func (o *outbox) Remove(m outMsg) error {
	if m.name == "" {
		o.mu.Lock()
		if len(o.mem) > 0 {
			o.mem = o.mem[1:]
		}
		o.mu.Unlock()
		return nil
	}
	err := os.Remove(filepath.Join(o.dir, m.name))
	if err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("outbox: %w", err)
	}
	return nil
}

// Len counts queued messages.
func (o *outbox) Len() int {
	names, _ := o.names()
	o.mu.Lock()
	defer o.mu.Unlock()
	return len(names) + len(o.mem)
}
