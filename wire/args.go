package wire

import "encoding/json"

// Job arguments by kind, as carried in Command.Args and in the API's
// POST /hosts/{id}/jobs. Field names are the stable contract (snake_case).

// Retention is a forget policy.
type Retention struct {
	KeepLast    int    `json:"keep_last,omitempty"`
	KeepHourly  int    `json:"keep_hourly,omitempty"`
	KeepDaily   int    `json:"keep_daily,omitempty"`
	KeepWeekly  int    `json:"keep_weekly,omitempty"`
	KeepMonthly int    `json:"keep_monthly,omitempty"`
	KeepYearly  int    `json:"keep_yearly,omitempty"`
	KeepWithin  string `json:"keep_within,omitempty"`
}

// ForgetArgs: forget {retention, tags, hosts, prune}.
type ForgetArgs struct {
	Retention Retention `json:"retention"`
	Tags      []string  `json:"tags,omitempty"`
	Hosts     []string  `json:"hosts,omitempty"`
	Prune     bool      `json:"prune,omitempty"`
	DryRun    bool      `json:"dry_run,omitempty"`
}

// PruneArgs: prune {max_unused}.
type PruneArgs struct {
	MaxUnused string `json:"max_unused,omitempty"`
	DryRun    bool   `json:"dry_run,omitempty"`
}

// CheckArgs: check {read_data_subset}.
type CheckArgs struct {
	ReadDataSubset string `json:"read_data_subset,omitempty"`
}

// UnlockArgs: unlock {remove_all}.
type UnlockArgs struct {
	RemoveAll bool `json:"remove_all,omitempty"`
}

// SnapshotsArgs: snapshots {hosts, tags, paths}.
type SnapshotsArgs struct {
	Hosts []string `json:"hosts,omitempty"`
	Tags  []string `json:"tags,omitempty"`
	Paths []string `json:"paths,omitempty"`
}

// StatsArgs: stats {mode, snapshot_ids}.
type StatsArgs struct {
	Mode        string   `json:"mode,omitempty"` // restore-size or raw-data
	SnapshotIDs []string `json:"snapshot_ids,omitempty"`
}

// DiffArgs: diff {snapshot_a, snapshot_b}.
type DiffArgs struct {
	SnapshotA string `json:"snapshot_a"`
	SnapshotB string `json:"snapshot_b"`
}

// RestoreArgs: restore {snapshot_id, include, target_path, in_place, overwrite, verify}.
type RestoreArgs struct {
	SnapshotID string   `json:"snapshot_id"`
	Include    []string `json:"include,omitempty"`
	TargetPath string   `json:"target_path,omitempty"`
	InPlace    bool     `json:"in_place,omitempty"`
	Overwrite  string   `json:"overwrite,omitempty"`
	Verify     bool     `json:"verify,omitempty"`
	// ToSource streams a source snapshot's dump into that source's restore
	// command on the agent (e.g. psql) instead of writing files.
	ToSource string `json:"to_source,omitempty"`
	// Bandwidth limits in KiB/s (restic's --limit-upload/--limit-download;
	// 0 none): a restore over a thin line mostly downloads.
	LimitUploadKiB   int `json:"limit_upload_kib,omitempty"`
	LimitDownloadKiB int `json:"limit_download_kib,omitempty"`
}

// LsArgs: ls {snapshot_id, path}: one directory's entries.
type LsArgs struct {
	SnapshotID string `json:"snapshot_id"`
	Path       string `json:"path,omitempty"`
}

// JobHealth is a composite job: the agent runs snapshots, stats (raw-data
// and restore-size) and the locks probe, and reports them together so the
// console can keep a repository's health and snapshot list current.
const JobHealth = "health"

// HealthOutput is the output of a health job. Each part is the output of
// its operation; a part that failed is missing and named in Errors.
type HealthOutput struct {
	Snapshots   json.RawMessage `json:"snapshots,omitempty"`
	RawData     json.RawMessage `json:"raw_data,omitempty"`
	RestoreSize json.RawMessage `json:"restore_size,omitempty"`
	Locks       json.RawMessage `json:"locks,omitempty"`
	Errors      []string        `json:"errors,omitempty"`
}
