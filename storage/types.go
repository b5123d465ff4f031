package storage

import (
	"encoding/json"
	"errors"
	"time"

	"github.com/restic-manager/restic-manager/wire"
)

// Errors callers test with errors.Is.
var (
	ErrNotFound = errors.New("not found")
	ErrExists   = errors.New("already exists")
	// ErrConflict is returned when a compare-and-set precondition fails.
	ErrConflict = errors.New("conflict")
)

// Job statuses: wire's vocabulary. Terminal ones never change again.
const (
	JobQueued    = wire.StatusQueued
	JobRunning   = wire.StatusRunning
	JobSucceeded = wire.StatusSucceeded
	JobPartial   = wire.StatusPartial
	JobFailed    = wire.StatusFailed
	JobCancelled = wire.StatusCancelled
	JobExpired   = wire.StatusExpired
	// JobHeld: a guarded forget waiting for an admin (not terminal).
	JobHeld = wire.StatusHeld
)

// TerminalStatus reports whether a job in status s has ended (wire.TerminalStatus).
func TerminalStatus(s string) bool { return wire.TerminalStatus(s) }

// Host is one enrolled (or about to be enrolled) endpoint.
type Host struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// CredentialHash is the SHA-256 of the host's MQTT password; the
	// password itself is high-entropy and never stored.
	CredentialHash []byte `json:"credential_hash,omitempty"`
	// BrokerHash is the same password in an external broker's password-file
	// format (Mosquitto's salted PBKDF2), made at enrolment while the
	// password is known, so the broker's password file can be generated.
	BrokerHash string `json:"broker_hash,omitempty"`
	// PublicKey is the agent's age X25519 recipient, registered at enrolment.
	PublicKey     string    `json:"public_key,omitempty"`
	Enrolled      bool      `json:"enrolled"`
	Online        bool      `json:"online"`
	OS            string    `json:"os,omitempty"`
	Arch          string    `json:"arch,omitempty"`
	Hostname      string    `json:"hostname,omitempty"`
	AgentVersion  string    `json:"agent_version,omitempty"`
	ResticVersion string    `json:"restic_version,omitempty"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	LastSeen      time.Time `json:"last_seen,omitzero"`
	CreatedAt     time.Time `json:"created_at"`
	// LastBackup is the most recent backup job that ended (any status).
	LastBackup *LastBackup `json:"last_backup,omitempty"`
	// LastJob is the most recent job that ended, of any kind.
	LastJob *LastBackup `json:"last_job,omitempty"`
	// LastSuccess is the most recent backup that succeeded (or was partial:
	// a snapshot exists); staleness is measured from it.
	LastSuccess *LastBackup `json:"last_success,omitempty"`
	// StaleAfter overrides the staleness threshold derived from the host's
	// schedules (for laptops that are often off, say). 0: derived.
	StaleAfter time.Duration `json:"stale_after,omitempty"`
	// ClockSkew is how far the agent's clock was ahead of the console's
	// (negative: behind) at its last connection, as measured from its
	// status; zero when unknown.
	ClockSkew time.Duration `json:"clock_skew,omitempty"`
	// Labels are the host's key=value pairs (wire.ValidateLabels); a
	// record from before labels has none.
	Labels map[string]string `json:"labels,omitempty"`
	// Hooks and Sources are the names the agent's own configuration
	// defines, as its last status reported them (never the commands: the
	// console cannot see or change those); RestoreSources are the sources
	// that also have a restore command. Each replaces the earlier list.
	Hooks          []string `json:"hooks,omitempty"`
	Sources        []string `json:"sources,omitempty"`
	RestoreSources []string `json:"restore_sources,omitempty"`
	// LastDrill is the most recent restore drill that proved this host's
	// backup (it may have run on another host); ProvenRestorableAt is when
	// the last one that succeeded ended (console/drills keeps both).
	LastDrill          *LastDrill `json:"last_drill,omitempty"`
	ProvenRestorableAt time.Time  `json:"proven_restorable_at,omitzero"`
}

// LastDrill summarises the last restore drill of a host's backup.
type LastDrill struct {
	JobID                 string    `json:"job_id"`
	Status                string    `json:"status"`
	EndedAt               time.Time `json:"ended_at"`
	SnapshotID            string    `json:"snapshot_id,omitempty"`
	RestoreBytesPerS      float64   `json:"restore_bytes_per_s"`
	EstimatedFullRestoreS float64   `json:"estimated_full_restore_s"`
	FilesChecked          int       `json:"files_checked"`
	Mismatches            int       `json:"mismatches"`
	// RanOn is the host that ran it, when not the drilled host itself.
	RanOn string `json:"ran_on,omitempty"`
}

// OK reports whether the drill succeeded.
func (d *LastDrill) OK() bool { return d != nil && d.Status == JobSucceeded }

// LastBackup summarises one finished job for host listings.
type LastBackup struct {
	JobID      string    `json:"job_id"`
	Kind       string    `json:"kind,omitempty"`
	Status     string    `json:"status"`
	EndedAt    time.Time `json:"ended_at"`
	SnapshotID string    `json:"snapshot_id,omitempty"`
}

// RepoSecrets is what must never be stored or shown in plaintext.
type RepoSecrets struct {
	URL      string            `json:"url"`
	Password string            `json:"password"`
	Env      map[string]string `json:"env,omitempty"`
	// Maintenance holds the credentials that may delete (forget, prune,
	// unlock --remove-all); only the maintenance host ever receives them.
	Maintenance *RepoSecrets `json:"maintenance,omitempty"`
	// NewPassword is a key rotation's new password while its rotate_key
	// job is under way; it becomes Password when the job reports that it
	// opens the repository.
	NewPassword string `json:"new_password,omitempty"`
}

// Repo is a restic repository. Secrets are kept sealed under the store's
// master key; use Store.RepoSecrets to open them.
type Repo struct {
	ID   string `json:"id"`
	Name string `json:"name"`
	// DisplayURL is the URL with any userinfo password removed, safe to show.
	DisplayURL string    `json:"display_url"`
	CreatedAt  time.Time `json:"created_at"`
	// Sealed holds the AES-GCM ciphertext of RepoSecrets (set by the store).
	Sealed []byte `json:"sealed,omitempty"`
	// MaintenanceHostID, when set, is the only host that runs forget, prune
	// and unlock --remove-all, with the maintenance credentials; endpoints
	// hold append-only credentials.
	MaintenanceHostID  string `json:"maintenance_host_id,omitempty"`
	MaintenanceDisplay string `json:"maintenance_display_url,omitempty"`
	// LastHostID is the host that last ran a job on the repository: the one
	// the console asks for health and snapshot lists.
	LastHostID string      `json:"last_host_id,omitempty"`
	Health     *RepoHealth `json:"health,omitempty"`
	// Hosts is the repository's access list: the hosts that may receive
	// its secrets (besides the maintenance host, for destructive work
	// only). HostsListed marks a record whose list was set (records from
	// before access lists get theirs from their history, once).
	Hosts       []string `json:"hosts,omitempty"`
	HostsListed bool     `json:"hosts_listed,omitempty"`
	// CopyTo lists the repositories copy jobs have copied this one to
	// (console/copies): its copy lag is measured against each.
	CopyTo []string `json:"copy_to,omitempty"`
	// RotationJobID is the key rotation under way (console/repos), and
	// PasswordRotatedAt when the last one switched the password.
	RotationJobID     string     `json:"rotation_job_id,omitempty"`
	PasswordRotatedAt *time.Time `json:"password_rotated_at,omitempty"`
}

// RepoHealth is what the console knows of a repository's state.
type RepoHealth struct {
	SizeBytes         uint64     `json:"size_bytes"`
	UncompressedBytes uint64     `json:"uncompressed_bytes"`
	CompressionRatio  float64    `json:"compression_ratio"`
	DedupRatio        float64    `json:"dedup_ratio"`
	RestoreSizeBytes  uint64     `json:"restore_size_bytes"`
	SnapshotCount     int        `json:"snapshot_count"`
	LastCheck         *CheckMark `json:"last_check"`
	// SizeHistory keeps the size at each health report (the newest
	// maxSizeHistory), for the repository page's chart.
	SizeHistory []SizePoint `json:"size_history,omitempty"`
	LastPrune   *time.Time  `json:"last_prune"`
	Locks       LockState   `json:"locks"`
	UpdatedAt   time.Time   `json:"updated_at,omitzero"`
	// CopyLag is, per copy destination, what of this repository is not
	// there yet (console/copies, from both cached snapshot lists).
	CopyLag []CopyLag `json:"copy_lag,omitempty"`
}

// CopyLag: the snapshots of a repository missing in one copy destination.
type CopyLag struct {
	ToRepoID         string     `json:"to_repo_id"`
	MissingSnapshots int        `json:"missing_snapshots"`
	OldestMissingAt  *time.Time `json:"oldest_missing_at"`
	// ByHost counts the missing snapshots per restic host name.
	ByHost       map[string]int       `json:"by_host,omitempty"`
	OldestByHost map[string]time.Time `json:"oldest_by_host,omitempty"`
	// Max is the threshold of the copy_lag alert (a policy's
	// copy_lag_max; 0: none); At when the lag was measured.
	Max int       `json:"max,omitempty"`
	At  time.Time `json:"at"`
}

// SizePoint is the repository's size at one time.
type SizePoint struct {
	At    time.Time `json:"at"`
	Bytes uint64    `json:"bytes"`
}

// MaxSizeHistory bounds RepoHealth.SizeHistory.
const MaxSizeHistory = 180

// CheckMark is the outcome of the last check.
type CheckMark struct {
	At     time.Time `json:"at"`
	OK     bool      `json:"ok"`
	JobID  string    `json:"job_id"`
	Errors int       `json:"errors,omitempty"`
}

// LockState summarises a repository's restic locks.
type LockState struct {
	Count      int     `json:"count"`
	OldestAgeS float64 `json:"oldest_age_s"`
	Stale      int     `json:"stale"`
}

// Job is one restic operation on one host.
type Job struct {
	ID         string          `json:"id"`
	HostID     string          `json:"host_id"`
	RepoID     string          `json:"repo_id"`
	Kind       string          `json:"kind"`
	Args       json.RawMessage `json:"args,omitempty"`
	ActorKind  string          `json:"actor_kind"` // user or schedule
	Actor      string          `json:"actor,omitempty"`
	ScheduleID string          `json:"schedule_id,omitempty"`
	// ScheduledAt and CatchUp come from the fire that made a scheduled job.
	ScheduledAt time.Time `json:"scheduled_at,omitzero"`
	CatchUp     bool      `json:"catch_up,omitempty"`
	Status      string    `json:"status"`
	CreatedAt   time.Time `json:"created_at"`
	// ExpiresAt: a command not started by then is not run.
	ExpiresAt  time.Time       `json:"expires_at,omitzero"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	EndedAt    time.Time       `json:"ended_at,omitzero"`
	ExitCode   *int            `json:"exit_code,omitempty"`
	Error      string          `json:"error,omitempty"`
	StderrTail string          `json:"stderr_tail,omitempty"`
	SnapshotID string          `json:"snapshot_id,omitempty"`
	Summary    json.RawMessage `json:"summary,omitempty"`
	Output     json.RawMessage `json:"output,omitempty"`
	Progress   *Progress       `json:"progress,omitempty"`
	TimeoutS   int             `json:"timeout_s,omitempty"`
	// Held: the console keeps the job back until its repository is free
	// (an exclusive operation, or a backup behind one). Waited: the job had
	// to wait for the repository, here or on the agent.
	Held   bool `json:"held,omitempty"`
	Waited bool `json:"waited,omitempty"`
	// EndedByConsole: the console ended the job (expired, cancelled before
	// it started, lost by its agent, its host removed) without the agent's
	// word; a result the agent sends later replaces that end.
	EndedByConsole bool `json:"ended_by_console,omitempty"`
	// ApprovedBy: the admin who approved a forget its guard held; it runs
	// again, unguarded.
	ApprovedBy string `json:"approved_by,omitempty"`
	// FiredBy is the host whose schedule fired the job, when the job runs
	// elsewhere (a forget routed to the maintenance host); the fire's
	// one-job-per-time key is that host's.
	FiredBy string `json:"fired_by,omitempty"`
	// Hooks are the runs of a backup's hooks, as its result reported them.
	Hooks []wire.HookRun `json:"hooks,omitempty"`
	// CopyJobID: the copy a policy made after this backup (console/copies:
	// one per backup, however often its result arrives).
	CopyJobID string `json:"copy_job_id,omitempty"`
}

// fireHost is the host a scheduled job's fire key belongs to.
func (j Job) fireHost() string {
	if j.FiredBy != "" {
		return j.FiredBy
	}
	return j.HostID
}

// Progress is the last progress report of a running job.
type Progress struct {
	Seq          int64     `json:"seq"`
	Percent      float64   `json:"percent"`
	BytesDone    uint64    `json:"bytes_done"`
	BytesTotal   uint64    `json:"bytes_total"`
	FilesDone    uint64    `json:"files_done"`
	FilesTotal   uint64    `json:"files_total"`
	CurrentFiles []string  `json:"current_files,omitempty"`
	ETASeconds   float64   `json:"eta_s,omitempty"`
	UpdatedAt    time.Time `json:"updated_at"`
}

// User is a person who logs into the console.
type User struct {
	Name         string    `json:"name"`
	PasswordHash string    `json:"password_hash"` // argon2id encoded
	Role         string    `json:"role"`          // admin, operator, viewer
	CreatedAt    time.Time `json:"created_at"`
	// Disabled users cannot log in, and their sessions and tokens do not
	// authenticate.
	Disabled bool `json:"disabled,omitempty"`
	// Source is where the account comes from: "" for a local account
	// (password), "oidc" for one made at its first sign-in through the
	// OpenID provider (no password; its role is mapped at every sign-in).
	Source string `json:"source,omitempty"`
}

// Session is a logged-in browser session; the token itself is never stored,
// only its SHA-256.
type Session struct {
	User      string    `json:"user"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}

// APIToken is a bearer token for automation; stored by SHA-256 only.
type APIToken struct {
	// ID names the token for listing and revocation; the token itself is
	// shown once and never stored.
	ID        string    `json:"id,omitempty"`
	Name      string    `json:"name"`
	User      string    `json:"user"`
	CreatedAt time.Time `json:"created_at"`
	// ExpiresAt ends the token; zero (as in tokens made before expiry
	// existed) means it never expires.
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Role caps what the token may do below its user's current role; empty
	// means the user's role.
	Role string `json:"role,omitempty"`
	// LastUsedAt is when the token last authenticated a request, to about
	// a minute (TouchAPIToken); zero: never used.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// EnrollToken is a one-time token that lets an agent obtain its credential.
type EnrollToken struct {
	HostID    string    `json:"host_id"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
}
