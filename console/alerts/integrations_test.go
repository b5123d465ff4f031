package alerts

import (
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/teststore"
)

// configCounter is a publisher that counts discovery configs published.
type configCounter struct {
	mu sync.Mutex
	n  int
}

func (c *configCounter) Publish(topic string, _ []byte, _ bool, _ time.Duration) error {
	if strings.HasPrefix(topic, "homeassistant/") && strings.HasSuffix(topic, "/config") {
		c.mu.Lock()
		c.n++
		c.mu.Unlock()
	}
	return nil
}

func (c *configCounter) count() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.n
}

// Ten birth messages in a row make one republish of the discovery
// configs; a birth after the interval makes another.
func TestHomeAssistantBirthsAreDebounced(t *testing.T) {
	st := teststore.Open(t)
	pub := &configCounter{}
	f, err := fleet.New(fleet.Options{Store: st, Publisher: pub})
	if err != nil {
		t.Fatal(err)
	}
	al := New(Options{Fleet: f, Interval: time.Hour})
	t.Cleanup(func() { al.Close(); f.Close() })
	teststore.EnrolledHost(t, st, "host-a")
	if err := st.PutSetting("console", Settings{HADiscovery: true}); err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	now := time.Now()
	al.births.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }

	perRepublish := len(haEntities) // one enrolled host
	waitCount := func(want int) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for pub.count() < want && time.Now().Before(deadline) {
			time.Sleep(5 * time.Millisecond)
		}
		// Let any republish that should not have started show itself.
		time.Sleep(200 * time.Millisecond)
		if got := pub.count(); got != want {
			t.Fatalf("%d discovery configs published, want %d (%d per republish)", got, want, perRepublish)
		}
	}
	for range 10 {
		al.HomeAssistantOnline()
	}
	waitCount(perRepublish)

	mu.Lock()
	now = now.Add(haBirthInterval / 2)
	mu.Unlock()
	al.HomeAssistantOnline()
	waitCount(perRepublish)

	mu.Lock()
	now = now.Add(haBirthInterval)
	mu.Unlock()
	al.HomeAssistantOnline()
	al.HomeAssistantOnline()
	waitCount(2 * perRepublish)
}
