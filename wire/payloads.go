package wire

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"
)

// Version is the payload version of this contract; every payload carries it
// as "v".
const Version = 1

// MaxPayload bounds any payload of this contract. The broker refuses larger
// packets, and decoders refuse larger payloads whatever transport they came
// by. Results carry structured output (snapshot lists, diffs), hence 2 MiB.
const MaxPayload = 2 << 20

// ErrInvalid wraps every decoding and validation failure.
var ErrInvalid = errors.New("wire: invalid payload")

// Job kinds: the names. What each kind is (exclusive, destructive, …) is in
// the table in kinds.go; JobHealth and JobIndex are in args.go and index.go.
const (
	JobInit      = "init"
	JobBackup    = "backup"
	JobForget    = "forget"
	JobPrune     = "prune"
	JobCheck     = "check"
	JobUnlock    = "unlock"
	JobSnapshots = "snapshots"
	JobStats     = "stats"
	JobDiff      = "diff"
	JobRestore   = "restore"
	JobLs        = "ls"
	JobLocks     = "locks"
	JobCancel    = "cancel" // a command kind, not a job kind
)

// Job statuses, the vocabulary of the whole system. A job is queued at the
// console, running once its agent started it, and then ends in one of the
// terminal statuses, which are the ones an agent may report in a Result.
const (
	StatusQueued    = "queued"
	StatusRunning   = "running"
	StatusSucceeded = "succeeded"
	StatusPartial   = "partial"
	StatusFailed    = "failed"
	StatusCancelled = "cancelled"
	StatusExpired   = "expired"
	// StatusHeld: a guarded forget stopped before deleting anything (its
	// preview removed too much, or found snapshots dated in the future); it
	// waits for an admin's approval or cancel. Not terminal: approved, the
	// same job runs again.
	StatusHeld = "held"
)

// TerminalStatus reports whether a job in status s has ended: it never
// changes again.
func TerminalStatus(s string) bool {
	switch s {
	case StatusSucceeded, StatusPartial, StatusFailed, StatusCancelled, StatusExpired:
		return true
	}
	return false
}

// Payload is implemented by every message type of the contract.
type Payload interface {
	Validate() error
}

// Status is retained on hosts/{host}/status; the Last Will carries the same
// shape with Online false.
type Status struct {
	V             int       `json:"v"`
	Online        bool      `json:"online"`
	AgentVersion  string    `json:"agent_version,omitempty"`
	OS            string    `json:"os,omitempty"`
	Arch          string    `json:"arch,omitempty"`
	Hostname      string    `json:"hostname,omitempty"`
	ResticVersion string    `json:"restic_version,omitempty"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	RunningJobs   []string  `json:"running_jobs,omitempty"`
	// Hooks and Sources are the names the agent's configuration defines
	// (never the commands); RestoreSources are the sources that have a
	// restore command.
	Hooks          []string `json:"hooks,omitempty"`
	Sources        []string `json:"sources,omitempty"`
	RestoreSources []string `json:"restore_sources,omitempty"`
	// SentAt is the agent's clock when it published this status (at each
	// connection): the console compares it with its own to show a host
	// whose clock is off.
	SentAt time.Time `json:"sent_at,omitzero"`
}

func (s *Status) Validate() error {
	if s.Online && s.StartedAt.IsZero() {
		return fmt.Errorf("%w: status: started_at required when online", ErrInvalid)
	}
	for _, j := range s.RunningJobs {
		if !ValidID(j) {
			return fmt.Errorf("%w: status: bad job id %q", ErrInvalid, j)
		}
	}
	for _, l := range []struct {
		what  string
		names []string
	}{{"hook", s.Hooks}, {"source", s.Sources}, {"restore source", s.RestoreSources}} {
		if err := CheckCommandNames(l.what, l.names); err != nil {
			return fmt.Errorf("%w: status: %v", ErrInvalid, err)
		}
	}
	return nil
}

// Command is sent to hosts/{host}/commands. Kind cancel carries only JobID.
type Command struct {
	V        int             `json:"v"`
	JobID    string          `json:"job_id"`
	Kind     string          `json:"kind"`
	Args     json.RawMessage `json:"args,omitempty"`
	TimeoutS int             `json:"timeout_s,omitempty"`
	// IssuedAt and ExpiresAt travel in the payload as well as the MQTT message
	// expiry, because a broker restart does not keep per-message expiry.
	IssuedAt  time.Time `json:"issued_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	// Guard, on a forget, makes the agent preview it first (--dry-run) and
	// stop, reporting status "held", when it would remove more than
	// MaxRemovePercent of the snapshots in scope or when any of them is
	// dated after NotAfter. Approved: an admin approved a held forget; it
	// runs again, unguarded.
	Guard    *ForgetGuard `json:"guard,omitempty"`
	Approved bool         `json:"approved,omitempty"`
	// SealedRepo is the repository (URL, password, backend env) as an age
	// ciphertext for this agent's X25519 key, base64. Only the agent can
	// open it: the broker, its persistence and other subscribers cannot.
	SealedRepo string `json:"sealed_repo,omitempty"`
	// SealedToRepo is a copy's destination repository, sealed the same way.
	SealedToRepo string `json:"sealed_to_repo,omitempty"`
	// SealedFromRepo is the repository an init copies its chunker
	// parameters from (InitArgs.CopyChunkerParamsFrom).
	SealedFromRepo string `json:"sealed_from_repo,omitempty"`
}

func (c *Command) Validate() error {
	if !ValidID(c.JobID) {
		return fmt.Errorf("%w: command: bad job_id %q", ErrInvalid, c.JobID)
	}
	if c.Kind == JobCancel {
		return nil
	}
	if _, ok := LookupKind(c.Kind); !ok {
		return fmt.Errorf("%w: command: unknown kind %q", ErrInvalid, c.Kind)
	}
	if c.SealedRepo == "" {
		return fmt.Errorf("%w: command: sealed_repo required for %s", ErrInvalid, c.Kind)
	}
	if (c.Kind == JobCopy || c.Kind == JobRotateKey) != (c.SealedToRepo != "") {
		return fmt.Errorf("%w: command: sealed_to_repo goes with copy and rotate_key jobs only", ErrInvalid)
	}
	if c.SealedFromRepo != "" && c.Kind != JobInit {
		return fmt.Errorf("%w: command: sealed_from_repo goes with init jobs only", ErrInvalid)
	}
	if c.IssuedAt.IsZero() {
		return fmt.Errorf("%w: command: issued_at required", ErrInvalid)
	}
	if c.TimeoutS < 0 {
		return fmt.Errorf("%w: command: negative timeout_s", ErrInvalid)
	}
	return nil
}

// ForgetGuard bounds what a forget may delete without an admin's approval.
type ForgetGuard struct {
	MaxRemovePercent int       `json:"max_remove_percent"`
	NotAfter         time.Time `json:"not_after"`
}

// RepoSpec is the plaintext inside Command.SealedRepo.
type RepoSpec struct {
	URL      string            `json:"url"`
	Password string            `json:"password"`
	Env      map[string]string `json:"env,omitempty"`
}

// BackupArgs are the arguments of a backup job.
type BackupArgs struct {
	Paths         []string `json:"paths"`
	Excludes      []string `json:"excludes,omitempty"`
	Tags          []string `json:"tags,omitempty"`
	ExcludeFiles  []string `json:"exclude_files,omitempty"`
	OneFileSystem bool     `json:"one_file_system,omitempty"`
	ExcludeCaches bool     `json:"exclude_caches,omitempty"`
	// UseFSSnapshot is VSS on Windows (--use-fs-snapshot).
	UseFSSnapshot bool `json:"use_fs_snapshot,omitempty"`
	// Hooks and Sources name commands of the agent's configuration: the
	// hooks run around restic, each source's output becomes a snapshot.
	Hooks   []string `json:"hooks,omitempty"`
	Sources []string `json:"sources,omitempty"`
	// Bandwidth limits in KiB/s (restic's --limit-upload/--limit-download).
	LimitUploadKiB   int `json:"limit_upload_kib,omitempty"`
	LimitDownloadKiB int `json:"limit_download_kib,omitempty"`
}

// Progress is sent on hosts/{host}/jobs/{job}/progress. The first message
// (Seq 1) is sent when restic has started and carries StartedAt.
type Progress struct {
	V            int       `json:"v"`
	JobID        string    `json:"job_id"`
	Seq          int64     `json:"seq"`
	StartedAt    time.Time `json:"started_at,omitzero"`
	Waited       bool      `json:"waited,omitempty"`
	Percent      float64   `json:"percent"`
	BytesDone    uint64    `json:"bytes_done"`
	BytesTotal   uint64    `json:"bytes_total"`
	FilesDone    uint64    `json:"files_done"`
	FilesTotal   uint64    `json:"files_total"`
	CurrentFiles []string  `json:"current_files,omitempty"`
	ETASeconds   float64   `json:"eta_s,omitempty"`
}

func (p *Progress) Validate() error {
	if !ValidID(p.JobID) {
		return fmt.Errorf("%w: progress: bad job_id %q", ErrInvalid, p.JobID)
	}
	if p.Seq < 1 {
		return fmt.Errorf("%w: progress: seq must be >= 1", ErrInvalid)
	}
	if p.Percent < 0 || p.Percent > 100 {
		return fmt.Errorf("%w: progress: percent %v out of range", ErrInvalid, p.Percent)
	}
	return nil
}

// Result is sent on hosts/{host}/jobs/{job}/result once per job (and again,
// identically, if the acknowledgement was lost).
type Result struct {
	V          int             `json:"v"`
	JobID      string          `json:"job_id"`
	Status     string          `json:"status"`
	ExitCode   int             `json:"exit_code"`
	StartedAt  time.Time       `json:"started_at,omitzero"`
	EndedAt    time.Time       `json:"ended_at"`
	SnapshotID string          `json:"snapshot_id,omitempty"`
	Summary    json.RawMessage `json:"summary,omitempty"`
	Output     json.RawMessage `json:"output,omitempty"`
	Error      string          `json:"error,omitempty"`
	StderrTail string          `json:"stderr_tail,omitempty"`
	// Waited: the run had to wait for another run on the same repository.
	Waited bool `json:"waited,omitempty"`
	// Hooks are the runs of the backup's hooks, in order.
	Hooks []HookRun `json:"hooks,omitempty"`
}

func (r *Result) Validate() error {
	if !ValidID(r.JobID) {
		return fmt.Errorf("%w: result: bad job_id %q", ErrInvalid, r.JobID)
	}
	if !TerminalStatus(r.Status) && r.Status != StatusHeld {
		return fmt.Errorf("%w: result: unknown status %q", ErrInvalid, r.Status)
	}
	if r.EndedAt.IsZero() {
		return fmt.Errorf("%w: result: ended_at required", ErrInvalid)
	}
	if r.SnapshotID != "" && !validSnapshotID(r.SnapshotID) {
		return fmt.Errorf("%w: result: bad snapshot_id %q", ErrInvalid, r.SnapshotID)
	}
	if len(r.Hooks) > MaxHookRuns {
		return fmt.Errorf("%w: result: %d hook runs, at most %d", ErrInvalid, len(r.Hooks), MaxHookRuns)
	}
	for i := range r.Hooks {
		if err := r.Hooks[i].validate(); err != nil {
			return err
		}
	}
	return nil
}

// validSnapshotID accepts restic's full (64) and short (8, restic 0.14) hex IDs.
func validSnapshotID(s string) bool {
	return (len(s) == 64 || len(s) == 8) && isLowerHex(s)
}

// Encode sets "v" and marshals p.
func Encode(p Payload) ([]byte, error) {
	setVersion(p)
	if err := p.Validate(); err != nil {
		return nil, err
	}
	return json.Marshal(p)
}

func setVersion(p Payload) {
	if v := versionField(p); v != nil {
		*v = Version
	}
}

// versionOf is the "v" of a decoded payload (0: missing; -1: a type it
// does not know).
func versionOf(p Payload) int {
	if v := versionField(p); v != nil {
		return *v
	}
	return -1 // a type missing from versionField is refused
}

// versionField is the one list of the payload types and their "v".
func versionField(p Payload) *int {
	switch m := p.(type) {
	case *Status:
		return &m.V
	case *Command:
		return &m.V
	case *Progress:
		return &m.V
	case *Result:
		return &m.V
	case *SchedulesDesired:
		return &m.V
	case *SchedulesReported:
		return &m.V
	case *Fire:
		return &m.V
	case *IndexChunk:
		return &m.V
	}
	return nil
}

// Decode parses a payload strictly: size bounded, one JSON object, "v" equal
// to Version, then the type's own validation. Unknown fields are allowed so
// that fields can be added within v1 without breaking older receivers.
func Decode[T any, P interface {
	*T
	Payload
}](b []byte) (T, error) {
	return decode[T, P](b, func(b []byte, v any) error {
		dec := json.NewDecoder(bytes.NewReader(b))
		if err := dec.Decode(v); err != nil {
			return err
		}
		if dec.More() {
			return errors.New("trailing data after the object")
		}
		return nil
	})
}

// decode is Decode with the JSON decoder given: unmarshal must refuse
// trailing data after the object.
func decode[T any, P interface {
	*T
	Payload
}](b []byte, unmarshal func([]byte, any) error) (T, error) {
	var zero T
	if len(b) > MaxPayload {
		return zero, fmt.Errorf("%w: %d bytes exceeds the %d byte limit", ErrInvalid, len(b), MaxPayload)
	}
	// One pass: decode, then read "v" from the value (an index chunk of
	// 3,000 nodes is 500 KB; reading "v" first read it twice more).
	var v T
	if err := unmarshal(b, &v); err != nil {
		return zero, fmt.Errorf("%w: %v", ErrInvalid, err)
	}
	switch ver := versionOf(P(&v)); ver {
	case Version:
	case 0:
		return zero, fmt.Errorf("%w: missing \"v\"", ErrInvalid)
	default:
		return zero, fmt.Errorf("%w: unsupported version %d", ErrInvalid, ver)
	}
	if err := P(&v).Validate(); err != nil {
		return zero, err
	}
	return v, nil
}

// DecodeStatus, DecodeCommand, DecodeProgress and DecodeResult are Decode for
// each message type.
func DecodeStatus(b []byte) (Status, error)     { return Decode[Status](b) }
func DecodeCommand(b []byte) (Command, error)   { return Decode[Command](b) }
func DecodeProgress(b []byte) (Progress, error) { return Decode[Progress](b) }
func DecodeResult(b []byte) (Result, error)     { return Decode[Result](b) }
