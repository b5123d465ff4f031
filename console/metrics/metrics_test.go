package metrics

import (
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/teststore"
)

// clock is a settable time for the collector.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *clock) now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) add(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(d)
}

func scrape(t *testing.T, h http.Handler) string {
	t.Helper()
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	if rec.Code != http.StatusOK {
		t.Fatalf("/metrics: %d", rec.Code)
	}
	return rec.Body.String()
}

// The fleet's gauges are read from the store once per refresh interval,
// however often /metrics is asked; after the interval a scrape reads the
// store again and sees what changed.
func TestScrapesWithinTheRefreshReadTheStoreOnce(t *testing.T) {
	st := teststore.Open(t)
	f, err := fleet.New(fleet.Options{Store: st, Publisher: &teststore.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	m := New()
	m.Attach(f, DefaultRefresh)
	// The collector Attach registered, on the test's clock.
	clk := &clock{t: time.Now()}
	fc := m.fleet
	fc.now = clk.now

	teststore.EnrolledHost(t, st, "host-a")
	h := m.Handler()
	first := scrape(t, h)
	if !strings.Contains(first, `restic_manager_host_online{host_id="host-a"} 0`) {
		t.Fatalf("first scrape lacks host-a:\n%s", first)
	}
	teststore.EnrolledHost(t, st, "host-b")
	clk.add(DefaultRefresh / 2)
	second := scrape(t, h)
	if n := fc.scans.Load(); n != 1 {
		t.Errorf("two scrapes within the refresh interval read the store %d times, want once", n)
	}
	if strings.Contains(second, "host-b") {
		t.Error("a scrape within the refresh interval read the store again")
	}
	clk.add(DefaultRefresh)
	third := scrape(t, h)
	if n := fc.scans.Load(); n != 2 {
		t.Errorf("a scrape after the interval: %d reads, want 2", n)
	}
	if !strings.Contains(third, `host_id="host-b"`) {
		t.Error("a scrape after the interval does not show the new host")
	}
}

// With a token, /metrics answers 401 without it or with another one.
func TestMetricsToken(t *testing.T) {
	m := New()
	srv := httptest.NewServer(RequireToken("s3cret-token", m.Handler()))
	defer srv.Close()
	for _, tc := range []struct {
		auth string
		want int
	}{
		{"", http.StatusUnauthorized},
		{"Bearer wrong", http.StatusUnauthorized},
		{"Bearer s3cret-token-and-more", http.StatusUnauthorized},
		{"Basic czNjcmV0LXRva2Vu", http.StatusUnauthorized},
		{"Bearer s3cret-token", http.StatusOK},
	} {
		req, _ := http.NewRequest("GET", srv.URL+"/metrics", nil)
		if tc.auth != "" {
			req.Header.Set("Authorization", tc.auth)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != tc.want {
			t.Errorf("Authorization %q: %d, want %d", tc.auth, resp.StatusCode, tc.want)
		}
		if tc.want != http.StatusOK && strings.Contains(string(body), "restic_manager") {
			t.Errorf("Authorization %q: figures served without the token", tc.auth)
		}
	}
}
