package agent

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

func TestOutboxOrderSurvivesReopen(t *testing.T) {
	dir := t.TempDir()
	o, err := openOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"a", "b", "c"} {
		if err := o.Put(topic, []byte(`{"x":1}`), false); err != nil {
			t.Fatal(err)
		}
	}
	m, ok, _ := o.Peek()
	if !ok || m.Topic != "a" {
		t.Fatalf("first = %+v %v", m, ok)
	}
	if err := o.Remove(m); err != nil {
		t.Fatal(err)
	}
	// A new process sees the rest in order, and appends after them.
	o2, err := openOutbox(dir)
	if err != nil {
		t.Fatal(err)
	}
	if err := o2.Put("d", []byte(`{}`), true); err != nil {
		t.Fatal(err)
	}
	var got []string
	for {
		m, ok, err := o2.Peek()
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		got = append(got, m.Topic)
		_ = o2.Remove(m)
	}
	if len(got) != 3 || got[0] != "b" || got[1] != "c" || got[2] != "d" {
		t.Fatalf("order after reopen = %v, want [b c d]", got)
	}
}

func TestOutboxSetsAsideCorruptFiles(t *testing.T) {
	dir := t.TempDir()
	o, _ := openOutbox(dir)
	if err := os.WriteFile(filepath.Join(dir, "00000000000000000000.json"), []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	o.next = 1
	_ = o.Put("good", []byte(`{}`), false)
	m, ok, err := o.Peek()
	if err != nil || !ok || m.Topic != "good" {
		t.Fatalf("Peek = %+v %v %v, want the good message", m, ok, err)
	}
	if _, err := os.Stat(filepath.Join(dir, "00000000000000000000.json.bad")); err != nil {
		t.Fatalf("corrupt file not set aside: %v", err)
	}
}

// PeekN gives the oldest messages in order, up to n, stops before a
// corrupt file (the next call sets it aside) and takes the ones kept in
// memory only when the disk has none.
func TestOutboxPeekN(t *testing.T) {
	dir := t.TempDir()
	o, _ := openOutbox(dir)
	for _, topic := range []string{"a", "b", "c", "d", "e"} {
		_ = o.Put(topic, []byte(`{}`), false)
	}
	topics := func(ms []outMsg) (out []string) {
		for _, m := range ms {
			out = append(out, m.Topic)
		}
		return out
	}
	ms, err := o.PeekN(3)
	if got := topics(ms); err != nil || len(got) != 3 || got[0] != "a" || got[2] != "c" {
		t.Fatalf("PeekN(3) = %v %v, want [a b c]", got, err)
	}
	_ = o.Remove(ms[1]) // b delivered before a: a stays first
	if err := os.WriteFile(filepath.Join(dir, ms[2].name), []byte("{broken"), 0o600); err != nil {
		t.Fatal(err)
	}
	if ms, _ = o.PeekN(4); len(ms) != 1 || ms[0].Topic != "a" {
		t.Fatalf("PeekN before a corrupt file = %v, want [a]", topics(ms))
	}
	_ = o.Remove(ms[0])
	if ms, _ = o.PeekN(4); len(ms) != 2 || ms[0].Topic != "d" || ms[1].Topic != "e" {
		t.Fatalf("PeekN after the corrupt file = %v, want [d e]", topics(ms))
	}
	_ = o.Remove(ms[0])
	_ = o.Remove(ms[1])
	o.mem = []outMsg{{Topic: "m1", Payload: []byte(`{}`)}, {Topic: "m2", Payload: []byte(`{}`)}}
	if ms, _ = o.PeekN(4); len(ms) != 1 || ms[0].Topic != "m1" {
		t.Fatalf("PeekN of messages in memory = %v, want [m1]", topics(ms))
	}
}

func TestJournalIsIdempotent(t *testing.T) {
	j, err := openJournal(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	cmd := wire.Command{JobID: "job-1", Kind: wire.JobBackup, IssuedAt: now, SealedRepo: "x"}
	if fresh, err := j.accept(cmd, now); err != nil || !fresh {
		t.Fatalf("first accept = %v %v", fresh, err)
	}
	if fresh, err := j.accept(cmd, now); err != nil || fresh {
		t.Fatalf("duplicate accept = %v %v, want not fresh", fresh, err)
	}
	if err := j.setState("job-1", jobRunning, now); err != nil {
		t.Fatal(err)
	}
	all, _ := j.all(now)
	if len(all) != 1 || all[0].State != jobRunning || all[0].StartedAt.IsZero() {
		t.Fatalf("entries = %+v", all)
	}
	if err := j.setState("job-1", jobDone, now); err != nil {
		t.Fatal(err)
	}
	// Still known while within retention: a late duplicate stays ignored.
	if fresh, _ := j.accept(cmd, now); fresh {
		t.Fatal("a finished job was accepted again")
	}
	// Pruned after retention.
	if all, _ := j.all(now.Add(doneRetention + time.Hour)); len(all) != 0 {
		t.Fatalf("old entries kept: %+v", all)
	}
}

func TestConfigRoundTripIsPrivate(t *testing.T) {
	p := filepath.Join(t.TempDir(), "etc", "agent.yaml")
	c := Config{HostID: "host-1", BrokerURL: "mqtt://127.0.0.1:1883", Username: "host-1", Password: "s3cret"}
	if err := c.Save(p); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("config mode %v %v, want 0600", st.Mode().Perm(), err)
	}
	got, err := LoadConfig(p)
	if err != nil || got.Password != "s3cret" || got.StateDir != filepath.Join(filepath.Dir(p), "state") {
		t.Fatalf("LoadConfig = %+v %v", got, err)
	}
	if err := os.WriteFile(p, []byte("host_id: x\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadConfig(p); err == nil {
		t.Fatal("incomplete config accepted")
	}
}

// TestOutMsgShape: what encodeOutMsg writes is json.Marshal's shape (files
// queued by an older agent read the same), and decodeOutMsg reads both back.
func TestOutMsgShape(t *testing.T) {
	for _, m := range []outMsg{
		{Topic: "hosts/h1/jobs/j1/output", Payload: json.RawMessage(`{"v":1,"nodes":[{"path":"/a\"}"}]}`)},
		{Topic: "hosts/h1/schedules/reported", Payload: json.RawMessage(`{"v":1,"retain":true}`), Retain: true},
		{Topic: "hosts/h1/x", Payload: json.RawMessage(`[1,2]`)},
		{Topic: `odd"topic`, Payload: json.RawMessage(`{}`), Retain: true},
	} {
		want, _ := json.Marshal(m)
		got, err := encodeOutMsg(m.Topic, m.Payload, m.Retain)
		if err != nil || string(got) != string(want) {
			t.Errorf("encode %+v = %s %v, want %s", m, got, err, want)
		}
		back, err := decodeOutMsg(want)
		if err != nil || back.Topic != m.Topic || string(back.Payload) != string(m.Payload) || back.Retain != m.Retain {
			t.Errorf("decode %s = %+v %v", want, back, err)
		}
	}
	if _, err := decodeOutMsg([]byte(`{"topic":"t","payload":{"v":1}`)); err == nil {
		t.Error("a cut file decodes")
	}
}
