package alerts

import (
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// A token that ends within a week raises token_expiring as a warning
// (one with longer to live, or none, raises nothing); once expired the
// alert says so; revoking the token resolves it.
func TestTokenExpiringAlert(t *testing.T) {
	st := teststore.Open(t)
	f, err := fleet.New(fleet.Options{Store: st, Publisher: &teststore.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	al := New(Options{Fleet: f, Interval: time.Hour, Now: func() time.Time { return now }})
	t.Cleanup(func() { al.Close(); f.Close() })
	put := func(id string, expires time.Time) {
		t.Helper()
		if err := st.PutAPIToken(token.Hash("rmt_"+id), storage.APIToken{ID: id, Name: "ci-" + id, User: "root", ExpiresAt: expires}); err != nil {
			t.Fatal(err)
		}
	}
	put("soon", now.Add(3*24*time.Hour))
	put("later", now.Add(30*24*time.Hour))
	put("never", time.Time{})
	al.evaluateTokens(now)

	a, err := st.GetAlert("token_expiring.soon")
	if err != nil || a.State != storage.AlertFiring || a.Severity != "warning" || !strings.Contains(a.Message, `"ci-soon"`) || !strings.Contains(a.Message, "3 days") {
		t.Fatalf("token expiring in 3 days: %+v %v", a, err)
	}
	for _, id := range []string{"later", "never"} {
		if _, err := st.GetAlert("token_expiring." + id); err == nil {
			t.Errorf("token %s raised an alert", id)
		}
	}
	// A week later it has expired: the alert says so.
	now = now.Add(7 * 24 * time.Hour)
	al.evaluateTokens(now)
	if a, _ = st.GetAlert("token_expiring.soon"); !strings.Contains(a.Message, "expired") {
		t.Errorf("an expired token's alert: %q", a.Message)
	}
	if err := st.DeleteAPIToken("soon"); err != nil {
		t.Fatal(err)
	}
	al.evaluateTokens(now)
	if a, _ = st.GetAlert("token_expiring.soon"); a.State != storage.AlertResolved {
		t.Errorf("a revoked token's alert is %s", a.State)
	}
}
