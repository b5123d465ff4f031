package fleet

import (
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A repository from before access lists gets one from its history at the
// first start: the hosts that backed up to it or have a schedule on it
// keep working; the maintenance host (which only pruned) and hosts that
// never used it get nothing.
func TestAccessListsFromHistory(t *testing.T) {
	st := teststore.Open(t)
	for _, h := range []string{"host-a", "host-b", "host-m", "host-z"} {
		teststore.EnrolledHost(t, st, h)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", MaintenanceHostID: "host-m"}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now().UTC()
	for i, j := range []storage.Job{
		{HostID: "host-a", Kind: wire.JobBackup},
		{HostID: "host-m", Kind: wire.JobPrune},
	} {
		j.ID, j.RepoID, j.Status, j.CreatedAt = "job-"+string(rune('a'+i)), "repo-1", storage.JobSucceeded, now
		if err := st.CreateJob(j); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.UpdateSchedules("host-b", func(hs *storage.HostSchedules) error {
		hs.Schedules = []schedules.Schedule{{ID: "sch-1", Name: "n", Kind: wire.JobBackup, Cron: "0 2 * * *", RepoID: "repo-1", Paths: []string{"/x"}}}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	f, err := New(Options{Store: st, Publisher: &teststore.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	rp, _ := st.GetRepo("repo-1")
	if got := strings.Join(rp.Hosts, ","); got != "host-a,host-b" || !rp.HostsListed {
		t.Errorf("access list from history: %q (listed %v), want host-a,host-b", got, rp.HostsListed)
	}
}
