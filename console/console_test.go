package console

import (
	"testing"

	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/storage"
)

// newTestConsole wires a console over a fresh store; opts adjust its
// options first.
func newTestConsole(t *testing.T, opts ...func(*Options)) (*Console, *storage.Store, *teststore.Recorder) {
	t.Helper()
	st := teststore.Open(t)
	rec := &teststore.Recorder{}
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

var enrolledHost = teststore.EnrolledHost
