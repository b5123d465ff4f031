package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"testing"
	"time"

	mqtt "github.com/mochi-mqtt/server/v2"
	"github.com/mochi-mqtt/server/v2/hooks/auth"
	"github.com/mochi-mqtt/server/v2/listeners"
	"github.com/mochi-mqtt/server/v2/packets"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/wire"
)

// These helpers run the agent's own code against real parts: an
// in-process mochi broker (the console's side is its inline client), the
// agent's journal and outbox on disk, and the runner's repository locks.
// Only restic itself is faked, at the agent's resticRunner seam.

const testHost = "host-1"

// testBroker is an in-process broker that records what agents publish.
type testBroker struct {
	srv *mqtt.Server
	url string

	mu   sync.Mutex
	msgs []testMsg
}

type testMsg struct {
	topic   string
	payload []byte
}

func newTestBroker(t *testing.T) *testBroker {
	t.Helper()
	srv := mqtt.New(&mqtt.Options{InlineClient: true, Logger: slog.New(slog.DiscardHandler)})
	if err := srv.AddHook(new(auth.AllowHook), nil); err != nil {
		t.Fatal(err)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := srv.AddListener(listeners.NewNet("test", ln)); err != nil {
		t.Fatal(err)
	}
	if err := srv.Serve(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	b := &testBroker{srv: srv, url: "mqtt://" + ln.Addr().String()}
	err = srv.Subscribe(wire.HostPrefix(testHost)+"#", 1, func(_ *mqtt.Client, _ packets.Subscription, pk packets.Packet) {
		b.mu.Lock()
		defer b.mu.Unlock()
		b.msgs = append(b.msgs, testMsg{topic: pk.TopicName, payload: bytes.Clone(pk.Payload)})
	})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// send publishes a command as the console does, queued for the agent's
// session while it is offline.
func (b *testBroker) send(t *testing.T, cmd wire.Command) {
	t.Helper()
	p, err := wire.Encode(&cmd)
	if err != nil {
		t.Fatal(err)
	}
	if err := b.srv.Publish(wire.CommandsTopic(testHost), p, false, 1); err != nil {
		t.Fatal(err)
	}
}

func (b *testBroker) cancel(t *testing.T, jobID string) {
	t.Helper()
	b.send(t, wire.Command{JobID: jobID, Kind: wire.JobCancel})
}

// results are the job results received, by job, in arrival order.
func (b *testBroker) results(t *testing.T) map[string][]wire.Result {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	out := map[string][]wire.Result{}
	for _, m := range b.msgs {
		tp, err := wire.ParseTopic(m.topic)
		if err != nil || tp.Kind != wire.KindResult {
			continue
		}
		r, err := wire.DecodeResult(m.payload)
		if err != nil {
			t.Errorf("malformed result on %s: %v", m.topic, err)
			continue
		}
		out[r.JobID] = append(out[r.JobID], r)
	}
	return out
}

// statuses are the agent's status messages, in arrival order.
func (b *testBroker) statuses(t *testing.T) []wire.Status {
	t.Helper()
	b.mu.Lock()
	defer b.mu.Unlock()
	var out []wire.Status
	for _, m := range b.msgs {
		if m.topic != wire.StatusTopic(testHost) {
			continue
		}
		s, err := wire.DecodeStatus(m.payload)
		if err != nil {
			t.Errorf("malformed status: %v", err)
			continue
		}
		out = append(out, s)
	}
	return out
}

// waitResult waits for a job's result.
func (b *testBroker) waitResult(t *testing.T, jobID string) wire.Result {
	t.Helper()
	var r wire.Result
	waitFor(t, "the result of "+jobID, func() bool {
		rs := b.results(t)[jobID]
		if len(rs) > 0 {
			r = rs[0]
		}
		return len(rs) > 0
	})
	return r
}

// waitStatus waits for a status with the given online flag after the
// first n statuses, and returns it.
func (b *testBroker) waitStatus(t *testing.T, online bool, n int) wire.Status {
	t.Helper()
	var got wire.Status
	waitFor(t, "the agent's status", func() bool {
		ss := b.statuses(t)
		for _, s := range ss[min(n, len(ss)):] {
			if s.Online == online {
				got = s
				return true
			}
		}
		return false
	})
	return got
}

// waitFor polls cond until it holds. The deadline is generous: the tests
// run beside others on a small shared machine.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	if d, ok := t.Deadline(); ok && time.Until(d) < 70*time.Second {
		deadline = d.Add(-10 * time.Second)
	}
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// testEnv is one agent installation: its state directory and key, and
// the fake restic each of its runs uses.
type testEnv struct {
	t         *testing.T
	cfg       Config
	recipient string
	restic    *fakeRestic
	log       *syncBuffer
	// window, when set, replaces gatherWindow: a test that needs every
	// queued command inside the window makes it long, so that a busy
	// machine cannot make it flake.
	window time.Duration
}

func newTestEnv(t *testing.T, b *testBroker) *testEnv {
	t.Helper()
	identity, recipient, err := seal.NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	state := t.TempDir()
	if err := writeFileAtomic(filepath.Join(state, identityFile), []byte(identity+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e := &testEnv{
		t: t, recipient: recipient, restic: newFakeRestic(), log: &syncBuffer{},
		cfg: Config{HostID: testHost, BrokerURL: b.url, Username: testHost, Password: "secret", StateDir: state},
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("agent log:\n%s", e.log.String())
		}
	})
	return e
}

// start runs the agent (a new process, as after a restart) until the
// returned stop is called; stop waits for it to end.
func (e *testEnv) start() (stop func()) {
	t := e.t
	t.Helper()
	logger := slog.New(slog.NewTextHandler(e.log, &slog.HandlerOptions{Level: slog.LevelDebug}))
	a, err := newAgent(Options{Config: e.cfg, Logger: logger, Version: "test"})
	if err != nil {
		t.Fatal(err)
	}
	a.runner = e.restic
	if e.window > 0 {
		a.gather.window = e.window
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- a.run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			select {
			case err := <-done:
				if err != nil {
					t.Errorf("agent: %v", err)
				}
			case <-time.After(60 * time.Second):
				t.Fatal("the agent did not stop")
			}
		})
	}
	t.Cleanup(stop)
	return stop
}

// backup is a backup command for this agent; all go to one repository.
func (e *testEnv) backup(jobID string, issued time.Time) wire.Command {
	e.t.Helper()
	repo, _ := json.Marshal(wire.RepoSpec{URL: "rest:http://127.0.0.1:1/repo", Password: "pw"})
	sealed, err := seal.Seal(e.recipient, repo)
	if err != nil {
		e.t.Fatal(err)
	}
	args, _ := json.Marshal(wire.BackupArgs{Paths: []string{"/data"}, Tags: []string{jobID}})
	return wire.Command{JobID: jobID, Kind: wire.JobBackup, Args: args, IssuedAt: issued.UTC(), SealedRepo: sealed}
}

// journal opens the agent's journal, to prepare or inspect it while the
// agent is stopped (or to read a finished job's entry).
func (e *testEnv) journal() *journal {
	e.t.Helper()
	jr, err := openJournal(filepath.Join(e.cfg.StateDir, "jobs"))
	if err != nil {
		e.t.Fatal(err)
	}
	return jr
}

func (e *testEnv) entry(jobID string) journalEntry {
	e.t.Helper()
	en, ok, err := e.journal().get(jobID)
	if err != nil || !ok {
		e.t.Fatalf("journal entry of %s: %v %v", jobID, ok, err)
	}
	return en
}

// syncBuffer collects the agent's log, shown when a test fails.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}
