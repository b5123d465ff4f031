package broker

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/autopaho"
	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// testMosquitto is a Mosquitto 2 with two console-role accounts: the
// console under test and a publisher standing in for the agents (one
// connection, so the order it publishes in is the order the console
// receives: Mosquitto forwards one client's QoS 1 messages in order).
type testMosquitto struct {
	addr string
	proc *harness.Proc
}

const testPassword = "s3cret"

func startTestMosquitto(t testing.TB) *testMosquitto {
	t.Helper()
	bin, err := testenv.MosquittoBin()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	auth := filepath.Join(dir, "auth")
	if err := os.MkdirAll(auth, 0o700); err != nil {
		t.Fatal(err)
	}
	var accounts []Account
	for _, u := range []string{"console-test", "agents-test"} {
		h, err := MosquittoHash(testPassword)
		if err != nil {
			t.Fatal(err)
		}
		accounts = append(accounts, Account{Username: u, Hash: h, Role: AccountConsole})
	}
	if err := WriteMosquittoAuth(auth, accounts); err != nil {
		t.Fatal(err)
	}
	m := &testMosquitto{}
	for attempt := 1; ; attempt++ {
		if m.addr, err = testenv.FreeAddr(); err != nil {
			t.Fatal(err)
		}
		conf, err := testenv.MosquittoConf(testenv.MosquittoConfig{AuthDir: auth, PersistDir: dir, Addr: m.addr})
		if err != nil {
			t.Fatal(err)
		}
		cf := filepath.Join(dir, "mosquitto.conf")
		if err := os.WriteFile(cf, []byte(conf), 0o600); err != nil {
			t.Fatal(err)
		}
		log := filepath.Join(dir, "mosquitto.log")
		if m.proc, err = harness.Start(harness.Cmd{Name: "mosquitto", Bin: bin, Args: []string{"-c", cf}, Log: log}); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
		err = harness.WaitListening(ctx, 20*time.Second, m.proc, m.addr, log)
		cancel()
		if err == nil {
			break
		}
		_ = m.proc.Stop(10 * time.Second)
		if attempt == 5 || !strings.Contains(err.Error(), "Address already in use") {
			t.Fatal(err)
		}
	}
	t.Cleanup(func() { _ = m.proc.Stop(10 * time.Second) })
	return m
}

func (m *testMosquitto) url() *url.URL { return &url.URL{Scheme: "mqtt", Host: m.addr} }

// startConsole connects an External as the console, ingesting into in.
func (m *testMosquitto) startConsole(t testing.TB, in Ingestor, onAck func(*paho.Publish)) *External {
	t.Helper()
	x, err := NewExternal(ExternalOptions{URL: m.url(), Username: "console-test", Password: []byte(testPassword),
		Logger: slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))})
	if err != nil {
		t.Fatal(err)
	}
	x.onAck = onAck
	if err := x.Start(context.Background(), in); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if err := x.AwaitConnection(ctx); err != nil {
		t.Fatal(err)
	}
	return x
}

// publish sends n messages, round robin over hosts, each waiting for its
// PUBACK; message i's payload is "i".
func (m *testMosquitto) publish(hosts []string, n int) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	cm, err := autopaho.NewConnection(ctx, autopaho.ClientConfig{
		ServerUrls: []*url.URL{m.url()}, KeepAlive: 30, CleanStartOnInitialConnection: true,
		ConnectUsername: "agents-test", ConnectPassword: []byte(testPassword),
		ClientConfig: paho.ClientConfig{ClientID: "agents-test"},
	})
	if err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	defer func() {
		_ = cm.Disconnect(ctx)
		<-cm.Done()
	}()
	if err := cm.AwaitConnection(ctx); err != nil {
		return fmt.Errorf("publisher: %w", err)
	}
	for i := range n {
		p := &paho.Publish{Topic: wire.StatusTopic(hosts[i%len(hosts)]), QoS: 1, Payload: []byte(strconv.Itoa(i))}
		if _, err := cm.Publish(ctx, p); err != nil {
			return fmt.Errorf("publish %d: %w", i, err)
		}
	}
	return nil
}

func testHosts(n int) []string {
	hosts := make([]string, n)
	for i := range hosts {
		hosts[i] = fmt.Sprintf("host-%02d", i)
	}
	return hosts
}

// recorder is an Ingestor that keeps what it stored, per host, and can be
// told to fail.
type recorder struct {
	mu       sync.Mutex
	perHost  map[string][]int
	stored   map[int]bool
	rejected map[int]bool
	attempts map[int]int
	active   int
	peak     int
	// fail, if set, says whether an attempt at message i fails.
	fail func(host string, i, attempt int) bool
	// gate, if set, blocks every Ingest until closed.
	gate chan struct{}
	// reject is a message refused as malformed.
	reject int
	delay  func(i int) time.Duration
	// stall, if positive: once this many are stored, Ingest hangs until
	// its context ends (a store that stopped answering).
	stall int
}

func newRecorder() *recorder {
	return &recorder{perHost: map[string][]int{}, stored: map[int]bool{}, rejected: map[int]bool{}, attempts: map[int]int{}, reject: -1}
}

func (r *recorder) Ingest(ctx context.Context, host string, t wire.Topic, payload []byte) error {
	i, err := strconv.Atoi(string(payload))
	if err != nil || t.Host != host {
		return fmt.Errorf("bad message %q on %s: %w", payload, host, ErrRejected)
	}
	if r.gate != nil {
		select {
		case <-r.gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	r.mu.Lock()
	if r.stall > 0 && len(r.stored) >= r.stall {
		r.mu.Unlock()
		<-ctx.Done()
		return ctx.Err()
	}
	r.active++
	r.peak = max(r.peak, r.active)
	attempt := r.attempts[i]
	r.attempts[i]++
	r.mu.Unlock()
	if r.delay != nil {
		time.Sleep(r.delay(i))
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	r.active--
	if r.fail != nil && r.fail(host, i, attempt) {
		return errors.New("store down")
	}
	if i == r.reject {
		r.rejected[i] = true
		return fmt.Errorf("malformed: %w", ErrRejected)
	}
	if !r.stored[i] { // a redelivery is stored once: receivers are idempotent
		r.perHost[host] = append(r.perHost[host], i)
	}
	r.stored[i] = true
	return nil
}

func (r *recorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.stored) + len(r.rejected)
}

// storedInOrder checks every host's messages were stored in the order they
// were sent.
func (r *recorder) storedInOrder(t *testing.T) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	for h, seq := range r.perHost {
		if !slices.IsSorted(seq) {
			t.Errorf("host %s stored out of order: %v", h, seq)
		}
	}
}

func waitFor(t *testing.T, what string, timeout time.Duration, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Messages of different hosts are stored concurrently, one host's in
// arrival order even while its store fails and is retried, and each
// acknowledgement goes out in arrival order and only after its message was
// stored (or rejected).
func TestExternalConcurrentIngestKeepsOrder(t *testing.T) {
	m := startTestMosquitto(t)
	hosts := testHosts(16)
	const n = 1600
	rec := newRecorder()
	rec.reject = 7
	// host-03 (messages 3, 19, 35, …) cannot store its first message for
	// three attempts (~1.2 s of retries) while the other hosts flow.
	rec.fail = func(host string, i, attempt int) bool { return i == 3 && attempt < 3 }
	rec.delay = func(i int) time.Duration { return time.Duration(i%7) * 100 * time.Microsecond }

	var mu sync.Mutex
	var acked []int
	var early []int
	x := m.startConsole(t, rec, func(pk *paho.Publish) {
		i, _ := strconv.Atoi(string(pk.Payload))
		rec.mu.Lock()
		ok := rec.stored[i] || rec.rejected[i]
		rec.mu.Unlock()
		mu.Lock()
		defer mu.Unlock()
		if !ok {
			early = append(early, i)
		}
		acked = append(acked, i)
	})
	defer x.Close()
	if err := m.publish(hosts, n); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every message acknowledged", time.Minute, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(acked) >= n
	})
	rec.storedInOrder(t)
	mu.Lock()
	defer mu.Unlock()
	if len(early) > 0 {
		t.Errorf("acknowledged before stored: %v", early)
	}
	for i, a := range acked {
		if a != i {
			t.Fatalf("acknowledgement %d is message %d: not in arrival order (%v…)", i, a, acked[max(0, i-3):min(len(acked), i+3)])
		}
	}
	if rec.attempts[3] != 4 {
		t.Errorf("message 3 tried %d times, want 4", rec.attempts[3])
	}
	if !rec.rejected[7] {
		t.Error("the rejected message was not acknowledged as such")
	}
	if rec.peak < 2 {
		t.Errorf("at most %d ingests at once: not concurrent", rec.peak)
	}
	t.Logf("peak concurrent ingests %d", rec.peak)
}

// The console holds at most receiveMaximum unacknowledged messages: the
// broker keeps the rest (Mosquitto would otherwise apply its default
// max_inflight_messages, 20).
func TestExternalReceiveMaximum(t *testing.T) {
	m := startTestMosquitto(t)
	rec := newRecorder()
	rec.gate = make(chan struct{})
	x := m.startConsole(t, rec, nil)
	defer x.Close()
	// And the other direction: Mosquitto lets the console have its
	// max_inflight_messages (20) publishes unacknowledged.
	if p := x.PublishParallelism(); p != 20 {
		t.Errorf("publish parallelism %d, want Mosquitto's Receive Maximum 20", p)
	}
	const n = receiveMaximum + 500
	if err := m.publish(testHosts(8), n); err != nil {
		t.Fatal(err)
	}
	pending := x.pending
	deadline := time.Now().Add(20 * time.Second)
	for pending() < receiveMaximum && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond)
	if p := pending(); p != receiveMaximum {
		t.Fatalf("%d messages held unacknowledged, want the Receive Maximum %d", p, receiveMaximum)
	}
	close(rec.gate)
	waitFor(t, "every message stored", time.Minute, func() bool { return rec.count() == n })
	rec.storedInOrder(t)
}

// A console that stops while one message cannot be stored loses nothing:
// neither it nor anything that arrived after it was acknowledged on the
// wire (although the later messages of other hosts were stored), so the
// broker delivers all of them again to the next console.
func TestExternalRestartRedeliversUnacknowledged(t *testing.T) {
	m := startTestMosquitto(t)
	hosts := testHosts(5)
	const n, firstFail = 500, 100 // message 100 is host-00's 21st
	rec1 := newRecorder()
	rec1.fail = func(host string, i, _ int) bool { return host == "host-00" && i >= firstFail }
	x1 := m.startConsole(t, rec1, nil)
	if err := m.publish(hosts, n); err != nil {
		t.Fatal(err)
	}
	// Everything but host-00 from message 100 on is stored…
	want := n - (n-firstFail)/len(hosts)
	waitFor(t, "the first console stored what it could", time.Minute, func() bool { return rec1.count() == want })
	// … and the acknowledgements of messages 0–99 had time to leave
	// (paho sends them every 50 ms).
	time.Sleep(300 * time.Millisecond)
	if err := x1.Close(); err != nil {
		t.Logf("close: %v", err)
	}

	rec2 := newRecorder()
	x2 := m.startConsole(t, rec2, nil)
	defer x2.Close()
	waitFor(t, "the second console stored the rest", time.Minute, func() bool { return rec2.count() >= n-firstFail })
	time.Sleep(300 * time.Millisecond) // any stray redelivery
	rec2.storedInOrder(t)
	rec1.storedInOrder(t)
	rec2.mu.Lock()
	defer rec2.mu.Unlock()
	for i := range n {
		if i >= firstFail && !rec2.stored[i] {
			t.Errorf("message %d not delivered again: acknowledged although message %d before it was never stored", i, firstFail)
		}
		if !rec1.stored[i] && !rec2.stored[i] {
			t.Errorf("message %d lost", i)
		}
	}
	if len(rec2.stored) != n-firstFail {
		t.Errorf("second console got %d messages, want %d (messages 0–%d were acknowledged)", len(rec2.stored), n-firstFail, firstFail-1)
	}
}

// BenchmarkExternalPublish is a bulk publish (a policy rollout's desired
// states, retained) through the console's connection with 8, 20 (Mosquitto's
// Receive Maximum for the console: PublishParallelism) and 64 goroutines.
func BenchmarkExternalPublish(b *testing.B) {
	for _, workers := range []int{8, 20, 64} {
		b.Run(strconv.Itoa(workers), func(b *testing.B) {
			m := startTestMosquitto(b)
			x := m.startConsole(b, newRecorder(), nil)
			defer x.Close()
			payload := make([]byte, 300)
			work := make(chan int)
			var wg sync.WaitGroup
			for range workers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := range work {
						if err := x.Publish(wire.SchedulesDesiredTopic(fmt.Sprintf("host-%05d", i%10000)), payload, true, 0); err != nil {
							b.Error(err)
						}
					}
				}()
			}
			b.ResetTimer()
			for i := range b.N {
				work <- i
			}
			close(work)
			wg.Wait()
		})
	}
}

// A console stopped in the middle of a stream, with ingests in flight and
// hundreds of messages received but not stored, loses nothing: what it had
// not stored was not acknowledged, and the next console gets it.
func TestExternalStopMidStreamLosesNothing(t *testing.T) {
	m := startTestMosquitto(t)
	hosts := testHosts(50)
	const n, stall = 1000, 300
	rec1 := newRecorder()
	rec1.delay = func(int) time.Duration { return time.Millisecond }
	rec1.stall = stall
	x1 := m.startConsole(t, rec1, nil)
	if err := m.publish(hosts, n); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the first console's store to stall", time.Minute, func() bool { return rec1.count() >= stall })
	// By now everything was delivered (n is under the Receive Maximum)
	// and paho would have sent any acknowledgement made.
	time.Sleep(500 * time.Millisecond)
	if p, stored := x1.pending(), rec1.count(); p < n-stored {
		t.Fatalf("%d messages await acknowledgement, want at least the %d not stored", p, n-stored)
	}
	if err := x1.Close(); err != nil {
		t.Logf("close: %v", err)
	}

	rec2 := newRecorder()
	x2 := m.startConsole(t, rec2, nil)
	defer x2.Close()
	lost := func() []int {
		rec1.mu.Lock()
		defer rec1.mu.Unlock()
		rec2.mu.Lock()
		defer rec2.mu.Unlock()
		var l []int
		for i := range n {
			if !rec1.stored[i] && !rec2.stored[i] {
				l = append(l, i)
			}
		}
		return l
	}
	deadline := time.Now().Add(30 * time.Second)
	for len(lost()) > 0 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if l := lost(); len(l) > 0 {
		t.Fatalf("%d messages lost: %v", len(l), l[:min(len(l), 20)])
	}
	rec1.storedInOrder(t)
	rec2.storedInOrder(t)
	t.Logf("first console stored %d, second %d", rec1.count(), rec2.count())
}
