package agent

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// TestUploadBackPressure: a console (browser) that stops reading stops the
// agent's producer — restic, in a real dump — after a bounded amount, and
// a cancel ends the upload at once, while the producer is blocked.
func TestUploadBackPressure(t *testing.T) {
	const total = 256 << 20
	// The bound is the kernel's loopback socket buffers plus a few 32 KiB
	// buffers; measured: 4 MiB ahead on loopback here. Unbounded buffering would
	// take all 256 MiB within the two seconds the test waits.
	const bound = 16 << 20
	release := make(chan struct{})
	var received atomic.Int64
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "hst_1" || p != "secret" {
			http.Error(w, `{"error":"bad credential"}`, http.StatusUnauthorized)
			return
		}
		n, _ := io.CopyN(io.Discard, r.Body, 1<<20)
		received.Add(n)
		select { // the browser stalls
		case <-release:
		case <-r.Context().Done():
			return
		}
		n, _ = io.Copy(io.Discard, r.Body)
		received.Add(n)
		w.WriteHeader(http.StatusNoContent)
	}))
	defer srv.Close()

	var produced atomic.Int64
	fill := func(w io.Writer) error {
		buf := make([]byte, 32<<10)
		for produced.Load() < total {
			n, err := w.Write(buf)
			produced.Add(int64(n))
			if err != nil {
				return err
			}
		}
		return nil
	}
	stalled := func(t *testing.T) int64 {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for received.Load() < 1<<20 && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		time.Sleep(time.Second)
		p1 := produced.Load()
		time.Sleep(time.Second)
		p2 := produced.Load()
		if p2 != p1 || p2-received.Load() > bound {
			t.Fatalf("the producer ran ahead of a stalled reader: %d MiB produced, %d MiB then, %d MiB read", p1>>20, p2>>20, received.Load()>>20)
		}
		return p2 - received.Load()
	}

	t.Run("stall then drain", func(t *testing.T) {
		up := uploader{client: srv.Client(), url: srv.URL + "/up", user: "hst_1", password: "secret"}
		done := make(chan error, 1)
		var sent uint64
		go func() {
			var err error
			sent, err = up.send(context.Background(), fill)
			done <- err
		}()
		ahead := stalled(t)
		t.Logf("producer ahead of the stalled reader by %.1f MiB", float64(ahead)/(1<<20))
		close(release)
		if err := <-done; err != nil || sent != total || received.Load() != total || up.read.Load() != total {
			t.Fatalf("after the stall: %v, sent %d, received %d", err, sent, received.Load())
		}
	})

	t.Run("cancel while stalled", func(t *testing.T) {
		release = make(chan struct{})
		defer close(release)
		received.Store(0)
		produced.Store(0)
		ctx, cancel := context.WithCancel(context.Background())
		up := uploader{client: srv.Client(), url: srv.URL + "/up", user: "hst_1", password: "secret"}
		done := make(chan error, 1)
		go func() {
			_, err := up.send(ctx, fill)
			done <- err
		}()
		stalled(t)
		cancel()
		select {
		case err := <-done:
			if err == nil {
				t.Fatal("a cancelled upload succeeded")
			}
		case <-time.After(5 * time.Second):
			t.Fatal("the cancelled upload did not end while its reader stalled")
		}
	})

	t.Run("refused", func(t *testing.T) {
		up := uploader{client: srv.Client(), url: srv.URL + "/up", user: "hst_1", password: "wrong"}
		_, err := up.send(context.Background(), fill)
		if err == nil || !strings.Contains(err.Error(), "bad credential") {
			t.Fatalf("refused upload: %v", err)
		}
	})
}
