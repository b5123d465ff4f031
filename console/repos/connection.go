package repos

import (
	"context"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// TestConnection proves a repository opens from a bound host: an
// unfiltered `snapshots` job (which also refreshes the cached snapshot
// list) on hostID, or on an online bound host, waited for until ctx ends.
// The job is returned as it is then (perhaps still running).
func (rs *Repos) TestConnection(ctx context.Context, repoID, hostID, actorKind, actor string) (storage.Job, error) {
	rp, err := rs.store.GetRepo(repoID)
	if err != nil {
		return storage.Job{}, err
	}
	if hostID, err = rs.boundHost(rp, hostID); err != nil {
		return storage.Job{}, err
	}
	j, err := rs.fleet.CreateJob(fleet.JobRequest{HostID: hostID, RepoID: repoID, Kind: wire.JobSnapshots,
		ActorKind: actorKind, Actor: actor})
	if err != nil {
		return storage.Job{}, err
	}
	return rs.waitJob(ctx, j.ID)
}
