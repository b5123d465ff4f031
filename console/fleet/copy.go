package fleet

import (
	"encoding/json"
	"errors"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A copy (ARCHITECTURE.md, "Copies") reads its job's repository and
// writes CopyArgs.ToRepoID: its host must be bound to both, and the
// command carries both sealed to the host's key. The gate counts it on
// both repositories (gate.go: repoIDs).

// CopyDest is a copy job's destination repository ("" for other kinds).
func CopyDest(kind string, args json.RawMessage) string {
	if kind != wire.JobCopy {
		return ""
	}
	var a struct {
		ToRepoID string `json:"to_repo_id"`
	}
	_ = json.Unmarshal(args, &a)
	return a.ToRepoID
}

// prepCopy completes and checks a copy for host h (newJob): the host's
// restic host name goes into args.hostname; the destination must exist,
// differ from the source and be bound to h.
func (f *Fleet) prepCopy(rp storage.Repo, h storage.Host, args json.RawMessage) (json.RawMessage, error) {
	var a wire.CopyArgs
	if err := json.Unmarshal(args, &a); err != nil {
		return nil, Invalid("copy args: %v", err)
	}
	a.Hostname = h.Hostname
	if a.Hostname == "" && len(a.SnapshotIDs) == 0 {
		return nil, Invalid("host %s has not reported its host name yet: a copy cannot find its snapshots; give args.snapshot_ids", h.ID)
	}
	if a.ToRepoID == rp.ID {
		return nil, Invalid("a copy's destination must be another repository than its source %s", rp.ID)
	}
	b, err := json.Marshal(a)
	if err != nil {
		return nil, err
	}
	norm, err := wire.NormalizeArgs(wire.JobCopy, b)
	if err != nil {
		return nil, argsInput(err)
	}
	if _, err := f.sealDest(h, wire.JobCopy, norm, false); err != nil {
		return nil, err
	}
	return norm, nil
}

// secondRepo is the other repository a job opens: a copy's destination,
// or the repository an init copies its chunker parameters from.
func secondRepo(kind string, args json.RawMessage) string {
	if kind == wire.JobInit {
		var a wire.InitArgs
		_ = json.Unmarshal(args, &a)
		return a.CopyChunkerParamsFrom
	}
	return CopyDest(kind, args)
}

// sealDest seals a job's second repository (secondRepo) to h ("" when it
// has none), refusing one h is not bound to: where the secrets leave
// (dispatch) as when the job is made (seal false: check only).
func (f *Fleet) sealDest(h storage.Host, kind string, args json.RawMessage, doSeal bool) (string, error) {
	to := secondRepo(kind, args)
	if to == "" {
		return "", nil
	}
	dst, err := f.store.GetRepo(to)
	if errors.Is(err, storage.ErrNotFound) {
		return "", Invalid("destination repository %q does not exist", to)
	} else if err != nil {
		return "", err
	}
	if err := f.bound(dst, h, kind, args); err != nil {
		return "", err
	}
	if !doSeal {
		return "", nil
	}
	sec, err := f.store.RepoSecrets(to)
	if err != nil {
		return "", err
	}
	if dst.MaintenanceHostID != "" && h.ID == dst.MaintenanceHostID && sec.Maintenance != nil {
		sec = *sec.Maintenance
	}
	plain, err := json.Marshal(wire.RepoSpec{URL: sec.URL, Password: sec.Password, Env: sec.Env})
	if err != nil {
		return "", err
	}
	return seal.Seal(h.PublicKey, plain)
}

// MayReceive reports whether host hostID may receive repository repoID's
// secrets for a non-destructive job (its access list or a policy).
func (f *Fleet) MayReceive(repoID, hostID string) bool {
	rp, err := f.store.GetRepo(repoID)
	if err != nil {
		return false
	}
	h, err := f.store.GetHost(hostID)
	return err == nil && f.bound(rp, h, wire.JobHealth, nil) == nil
}
