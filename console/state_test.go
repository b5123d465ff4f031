package console

import (
	"net/http/httptest"
	"regexp"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
)

// A weekly host whose last backup is a few days old is fine, not
// "failing": the dashboard, the alerts and the metrics judge it by its own
// schedule. (The dashboard used fixed 26 h/72 h marks while the alerts used
// the schedule, so a weekly host showed failing with no alert.) At each age
// the dashboard's state and the firing backup_stale alert must agree.
func TestDashboardAndAlertsAgreeOnAWeeklyHost(t *testing.T) {
	c, st, _ := newTestConsole(t, func(o *Options) {
		o.AlertInterval = 20 * time.Millisecond
		o.MetricsRefresh = -1 // each age is scraped at once, without waiting for a refresh
	})
	enrolledHost(t, st, "host-w")
	if _, err := st.UpdateSchedules("host-w", func(hs *storage.HostSchedules) error {
		hs.Version, hs.AppliedVersion = 1, 1
		hs.UpdatedAt = time.Now().Add(-60 * 24 * time.Hour)
		hs.Schedules = []schedules.Schedule{{ID: "sch-w", Name: "weekly", Kind: "backup", Cron: "0 3 * * 0", Enabled: true, RepoID: "repo-1", Paths: []string{"/srv"}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(storage.User{Name: "v", Role: auth.RoleViewer, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAPIToken(token.Hash("rmt_state_v"), storage.APIToken{ID: "tok-v", Name: "v", User: "v"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	stateRe := regexp.MustCompile(`data-host="host-w" data-state="([a-z]+)"`)
	metricRe := regexp.MustCompile(`restic_manager_hosts\{state="([a-z]+)"\} 1`)

	for _, tc := range []struct {
		age   time.Duration
		state string
		stale bool
	}{
		{2 * 24 * time.Hour, "ok", false},      // within the week
		{9 * 24 * time.Hour, "warning", false}, // a run missed (7 d + 14 h), not yet a breach
		{12 * 24 * time.Hour, "failing", true}, // past 7 d + 3.5 d: backup_stale, critical
		{time.Hour, "ok", false},               // a new backup resolves it
	} {
		ended := time.Now().Add(-tc.age)
		last := &storage.LastBackup{JobID: "job-w", Kind: "backup", Status: storage.JobSucceeded, EndedAt: ended}
		if _, err := st.UpdateHost("host-w", func(h *storage.Host) error {
			h.Online, h.LastSeen, h.LastBackup, h.LastJob, h.LastSuccess = true, time.Now(), last, last, last
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		// The alert loop runs every 20 ms: wait for the alert to settle.
		deadline := time.Now().Add(10 * time.Second)
		for {
			a, err := st.GetAlert("backup_stale.host-w")
			firing := err == nil && a.State == storage.AlertFiring
			if firing == tc.stale {
				if firing && a.Severity != "critical" {
					t.Fatalf("age %s: backup_stale is %s, want critical", tc.age, a.Severity)
				}
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("age %s: backup_stale firing=%v, want %v", tc.age, firing, tc.stale)
			}
			time.Sleep(10 * time.Millisecond)
		}
		_, body := getPageWith(t, srv, "rmt_state_v", "/")
		m := stateRe.FindStringSubmatch(body)
		if m == nil || m[1] != tc.state {
			t.Errorf("age %s: dashboard state %v, want %s", tc.age, m, tc.state)
		}
		_, metrics := getPageWith(t, srv, "", "/metrics")
		if mm := metricRe.FindStringSubmatch(metrics); mm == nil || mm[1] != tc.state {
			t.Errorf("age %s: metrics count the host as %v, want %s", tc.age, mm, tc.state)
		}
	}
}
