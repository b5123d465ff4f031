package wire

// JobCopy is `restic copy` from the job's repository (the source) into
// the repository CopyArgs.ToRepoID names (ARCHITECTURE.md, "Copies"):
// the snapshots not yet there (restic's own duplicate detection). The
// command carries both repositories sealed to the agent: SealedRepo is
// the source, SealedToRepo the destination.
const JobCopy = "copy"

// MaxCopySnapshots bounds the snapshots one copy names.
const MaxCopySnapshots = 10_000

// CopyArgs: copy {to_repo_id, snapshot_ids, limit_upload_kib, limit_download_kib}.
type CopyArgs struct {
	ToRepoID string `json:"to_repo_id"`
	// SnapshotIDs copies these; empty: every snapshot of the host (its
	// restic host name, set by the console in Hostname) missing there.
	SnapshotIDs      []string `json:"snapshot_ids,omitempty"`
	Hostname         string   `json:"hostname,omitempty"`
	LimitUploadKiB   int      `json:"limit_upload_kib,omitempty"`
	LimitDownloadKiB int      `json:"limit_download_kib,omitempty"`
}

func (a *CopyArgs) check() error {
	if !ValidID(a.ToRepoID) {
		return badArgs("copy needs to_repo_id, the destination repository")
	}
	if len(a.SnapshotIDs) > MaxCopySnapshots {
		return badArgs("at most %d snapshot ids", MaxCopySnapshots)
	}
	for _, id := range a.SnapshotIDs {
		if !ValidSnapshotRef(id) || id == "latest" {
			return badArgs("snapshot id %q is not 8-64 hex characters", id)
		}
	}
	if a.Hostname != "" {
		if err := CheckArg(a.Hostname); err != nil {
			return err
		}
	}
	if err := CheckLimits(a.LimitUploadKiB, a.LimitDownloadKiB); err != nil {
		return err
	}
	return nil
}

// CopyOutput is a copy's output.
type CopyOutput struct {
	// Copied are the source snapshots restic copied; Skipped those it
	// found already there.
	Copied  []string `json:"copied"`
	Skipped int      `json:"skipped,omitempty"`
}

// InitArgs: init {copy_chunker_params_from}. A repository that copies are
// made into (or from) must share its partner's chunker parameters, or the
// copies do not deduplicate: init then runs with --copy-chunker-params
// from that repository, which the command carries sealed in
// SealedFromRepo.
type InitArgs struct {
	CopyChunkerParamsFrom string `json:"copy_chunker_params_from,omitempty"`
}

func (a *InitArgs) check() error {
	if a.CopyChunkerParamsFrom != "" && !ValidID(a.CopyChunkerParamsFrom) {
		return badArgs("copy_chunker_params_from must be a repository id")
	}
	return nil
}
