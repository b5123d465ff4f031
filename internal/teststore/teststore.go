// Package teststore gives the console's in-process tests a real store and
// a publisher that records what was sent.
package teststore

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/storage"
)

// Open opens a store in a temporary directory, closed when the test ends.
func Open(t testing.TB) *storage.Store {
	t.Helper()
	st, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

// EnrolledHost stores an enrolled host with a fresh agent key.
func EnrolledHost(t testing.TB, st *storage.Store, id string) {
	t.Helper()
	_, rcpt, _ := seal.NewIdentity()
	if err := st.CreateHost(storage.Host{ID: id, Name: id, Enrolled: true, PublicKey: rcpt, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
}

// Recorder is a publisher that keeps the topics it was asked to publish on.
type Recorder struct {
	mu       sync.Mutex
	sent     []string
	payloads [][]byte
}

// Publish records the topic and payload.
func (r *Recorder) Publish(topic string, payload []byte, retain bool, expiry time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, topic)
	r.payloads = append(r.payloads, append([]byte(nil), payload...))
	return nil
}

// Last returns the last payload published on topic (nil if none).
func (r *Recorder) Last(topic string) []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := len(r.sent) - 1; i >= 0; i-- {
		if r.sent[i] == topic {
			return r.payloads[i]
		}
	}
	return nil
}

// Commands is the number of commands sent (health and alert topics aside).
func (r *Recorder) Commands() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for _, t := range r.sent {
		if strings.HasSuffix(t, "/commands") {
			n++
		}
	}
	return n
}

// Sent returns the topics published so far.
func (r *Recorder) Sent() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.sent...)
}
