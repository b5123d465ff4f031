package console

import (
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/storage"
)

// recorder is a Publisher that keeps the topics the console sent to.
type recorder struct {
	mu   sync.Mutex
	sent []string
}

func (r *recorder) Publish(topic string, payload []byte, retain bool, expiry time.Duration) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.sent = append(r.sent, topic)
	return nil
}

// newTestConsole wires a console over a fresh store; opts adjust its
// options first.
func newTestConsole(t *testing.T, opts ...func(*Options)) (*Console, *storage.Store, *recorder) {
	t.Helper()
	st, err := storage.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	rec := &recorder{}
	o := Options{Store: st, Publisher: rec}
	for _, fn := range opts {
		fn(&o)
	}
	c, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	return c, st, rec
}

func enrolledHost(t *testing.T, st *storage.Store, id string) {
	t.Helper()
	_, rcpt, _ := seal.NewIdentity()
	if err := st.CreateHost(storage.Host{ID: id, Name: id, Enrolled: true, PublicKey: rcpt, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
}
