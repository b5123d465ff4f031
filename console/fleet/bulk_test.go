package fleet

import (
	"encoding/json"
	"slices"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A bulk forget goes where a single one would: each host's to the
// repository's maintenance host, narrowed to that host's snapshots; a host
// whose forget cannot be narrowed is refused alone.
func TestBulkForgetRoutedToTheMaintenanceHost(t *testing.T) {
	f, st, _ := newTestFleet(t)
	for _, h := range []struct{ id, hostname string }{{"host-a", "web-a"}, {"host-b", "web-b"}, {"host-c", ""}, {"host-m", "maint"}} {
		enrolledHost(t, st, h.id)
		if _, err := st.UpdateHost(h.id, func(x *storage.Host) error { x.Hostname = h.hostname; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b", "host-c"}, MaintenanceHostID: "host-m"},
		storage.RepoSecrets{URL: "/srv/r", Password: "pw", Maintenance: &storage.RepoSecrets{URL: "/srv/r", Password: "pw"}}); err != nil {
		t.Fatal(err)
	}
	res, err := f.CreateJobs(JobRequest{RepoID: "repo-1", Kind: wire.JobForget, Args: json.RawMessage(`{"retention":{"keep_last":3}}`), ActorKind: "user", Actor: "u"},
		[]string{"host-a", "host-b", "host-c"})
	if err != nil {
		t.Fatal(err)
	}
	if len(res.JobIDs) != 2 || len(res.Refused) != 1 || res.Refused[0].HostID != "host-c" || !strings.Contains(res.Refused[0].Error, "host name") {
		t.Fatalf("bulk forget: %+v", res)
	}
	for i, want := range []string{"web-a", "web-b"} {
		j, err := st.GetJob(res.JobIDs[i])
		if err != nil {
			t.Fatal(err)
		}
		var a wire.ForgetArgs
		_ = json.Unmarshal(j.Args, &a)
		if j.HostID != "host-m" || !slices.Equal(a.Hosts, []string{want}) {
			t.Errorf("forget %d: on %s for %v, want on host-m for [%s]", i, j.HostID, a.Hosts, want)
		}
	}
}
