package console

import (
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Backups that end are counted per day, once per job however often its
// result arrives, and the dashboard charts them (backups, data added) with
// the total repository size and the proven-restorable count.
func TestDashboardFleetCharts(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-a")
	yesterday := time.Now().UTC().Add(-24 * time.Hour)
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", HostsListed: true, Hosts: []string{"host-a"},
		Health: &storage.RepoHealth{SizeHistory: []storage.SizePoint{{At: yesterday, Bytes: 1 << 30}, {At: time.Now().UTC(), Bytes: 2 << 30}}}},
		storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	end := func(status string, dataAdded string) {
		t.Helper()
		j, err := c.fleet.CreateJob(fleet.JobRequest{HostID: "host-a", RepoID: "repo-1", Kind: wire.JobBackup,
			Args: []byte(`{"paths":["/etc"]}`), ActorKind: "user", Actor: "t"})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := wire.Encode(&wire.Result{JobID: j.ID, Status: status, EndedAt: time.Now().UTC(), Summary: []byte(`{"data_added":` + dataAdded + `}`)})
		for range 2 { // a redelivered result is not counted twice
			if err := c.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindResult, Job: j.ID}, b); err != nil {
				t.Fatal(err)
			}
		}
	}
	end(wire.StatusSucceeded, "1048576")
	end(wire.StatusSucceeded, "1048576")
	end(wire.StatusFailed, "0")
	deadline := time.Now().Add(10 * time.Second)
	var days []storage.DayStats
	for {
		c.daystats.Flush()
		days, _ = st.DayStatsSince(time.Now().UTC().Format("2006-01-02"))
		if len(days) == 1 && days[0].BackupsOK+days[0].BackupsFailed == 3 || time.Now().After(deadline) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if len(days) != 1 || days[0].BackupsOK != 2 || days[0].BackupsFailed != 1 || days[0].DataAdded != 2<<20 {
		t.Fatalf("day stats %+v", days)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	req, _ := http.NewRequest("GET", srv.URL+"/", nil)
	req.Header.Set("Authorization", "Bearer rmt_trust_viewer")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	page := string(b)
	for _, want := range []string{`id="chart-backups"`, `class="bar-failed"`, `id="chart-data-added"`, "2.0 MiB", `id="chart-size"`, "2.0 GiB", `id="count-proven"`} {
		if !strings.Contains(page, want) {
			t.Errorf("dashboard lacks %q", want)
		}
	}
}
