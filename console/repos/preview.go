package repos

import (
	"context"
	"encoding/json"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// PreviewRequest is POST /repos/{id}/forget-preview: the retention being
// edited (a schedule's or a policy's), the host whose forget it would be.
type PreviewRequest struct {
	HostID    string         `json:"host_id"`
	Retention wire.Retention `json:"retention"`
	Tags      []string       `json:"tags"`
	Hosts     []string       `json:"hosts"`
}

// PreviewForget runs the forget a schedule with this retention would run
// on hostID (or an online bound host), with restic's --dry-run: the same
// job path (routing to the maintenance host, narrowing to the host's
// snapshots there), so what it lists is what the forget would remove.
// Nothing is deleted and no guard holds it. It waits until ctx ends and
// returns the job as it is then.
func (rs *Repos) PreviewForget(ctx context.Context, repoID string, req PreviewRequest, actorKind, actor string) (storage.Job, error) {
	rp, err := rs.store.GetRepo(repoID)
	if err != nil {
		return storage.Job{}, err
	}
	hostID, err := rs.boundHost(rp, req.HostID)
	if err != nil {
		return storage.Job{}, err
	}
	args, err := json.Marshal(wire.ForgetArgs{Retention: req.Retention, Tags: req.Tags, Hosts: req.Hosts, DryRun: true})
	if err != nil {
		return storage.Job{}, err
	}
	j, err := rs.fleet.CreateJob(fleet.JobRequest{HostID: hostID, RepoID: repoID, Kind: wire.JobForget, Args: args,
		ActorKind: actorKind, Actor: actor})
	if err != nil {
		return storage.Job{}, err
	}
	return rs.waitJob(ctx, j.ID)
}

// waitJob polls a job until it ends or ctx does. A restic run takes about
// a second (key derivation and one list); polling the store every 200 ms
// costs nothing next to it.
func (rs *Repos) waitJob(ctx context.Context, id string) (storage.Job, error) {
	tick := time.NewTicker(200 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return rs.store.GetJob(id)
		case <-tick.C:
		}
		j, err := rs.store.GetJob(id)
		if err != nil || storage.TerminalStatus(j.Status) {
			return j, err
		}
	}
}

// dryRun tells whether a forget job only previewed.
func dryRun(j storage.Job) bool {
	var a wire.ForgetArgs
	return j.Kind == wire.JobForget && json.Unmarshal(j.Args, &a) == nil && a.DryRun
}
