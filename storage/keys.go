package storage

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/dgraph-io/badger/v4"
)

// Key layout. Every key is a '/'-separated ASCII string so the database is
// readable with generic tools.
//
//	meta/schema                          decimal schema version (not an envelope)
//	meta/keycheck                        sealed constant, proves master.key matches
//	host/{id}                            Host
//	enroll/{hex sha256(token)}           EnrollToken
//	repo/{id}                            Repo (with Sealed)
//	job/{id}                             Job
//	jobidx/h/{host}/{ts}/{job id}        empty; per-host index
//	jobidx/a/{ts}/{job id}               empty; global index
//	user/{name}                          User
//	sess/{hex sha256(token)}             Session
//	tok/{hex sha256(token)}              APIToken
//	sched/{host}                         HostSchedules
//	firejob/{host}/{schedule}/{ts}       job ID made for the fire of {ts} (scheduled_at)
//
// {ts} is CreatedAt in Unix nanoseconds as 16 hex digits, so byte order is
// time order and ties are broken by job ID.
const (
	metaSchemaKey    = "meta/schema"
	metaKeyCheckKey  = "meta/keycheck"
	hostPrefix       = "host/"
	enrollPrefix     = "enroll/"
	repoPrefix       = "repo/"
	jobPrefix        = "job/"
	jobIdxHostPrefix = "jobidx/h/"
	jobIdxAllPrefix  = "jobidx/a/"
	userPrefix       = "user/"
	sessPrefix       = "sess/"
	tokPrefix        = "tok/"
)

func hostKey(id string) []byte   { return []byte(hostPrefix + id) }
func repoKey(id string) []byte   { return []byte(repoPrefix + id) }
func jobKey(id string) []byte    { return []byte(jobPrefix + id) }
func userKey(name string) []byte { return []byte(userPrefix + name) }

// hostJobIdxPrefix ends in '/' so host "a" never matches host "ab".
func hostJobIdxPrefix(hostID string) []byte {
	return []byte(jobIdxHostPrefix + hostID + "/")
}

// jobIndexKeys returns the per-host and global index keys of j.
func jobIndexKeys(j Job) (perHost, global []byte) {
	suffix := idxTime(j.CreatedAt) + "/" + j.ID
	return []byte(jobIdxHostPrefix + j.HostID + "/" + suffix), []byte(jobIdxAllPrefix + suffix)
}

// idxTime renders t so that lexical order is chronological. Times before
// 1970 (which no job has) clamp to zero rather than wrapping around.
func idxTime(t time.Time) string {
	n := t.UnixNano()
	if n < 0 {
		n = 0
	}
	return fmt.Sprintf("%016x", uint64(n))
}

// hashKey keys a token record by its SHA-256. Requiring exactly 32 bytes
// catches a caller passing the raw token by mistake.
func hashKey(prefix string, hash []byte) ([]byte, error) {
	if len(hash) != sha256.Size {
		return nil, fmt.Errorf("token hash is %d bytes, want %d: %w", len(hash), sha256.Size, ErrInvalid)
	}
	return []byte(prefix + hex.EncodeToString(hash)), nil
}

// validID rejects IDs that would break the key layout. IDs are embedded in
// '/'-separated keys: a '/' in a host ID could make one host's index prefix
// match another host's entries.
func validID(id string) error {
	if id == "" {
		return fmt.Errorf("empty ID: %w", ErrInvalid)
	}
	if len(id) > 256 {
		return fmt.Errorf("ID longer than 256 bytes: %w", ErrInvalid)
	}
	for i := 0; i < len(id); i++ {
		if c := id[i]; c == '/' || c < 0x20 || c == 0x7f {
			return fmt.Errorf("ID %q contains '/' or a control character: %w", id, ErrInvalid)
		}
	}
	return nil
}

// Record encoding: every value is an envelope {"v":1,"d":<record JSON>} so
// the format can evolve; a build refuses versions it does not know instead
// of silently misreading them.
const recordVersion = 1

var (
	errUnsupportedVersion = errors.New("unsupported record version")
	errSchemaTooNew       = errors.New("schema too new")
)

type envelope struct {
	V int             `json:"v"`
	D json.RawMessage `json:"d"`
}

// envelopeHead is how encode's output starts: json.Marshal of an envelope
// whose D is already compact JSON from json.Marshal (HTML-escaped alike).
const envelopeHead = `{"v":1,"d":`

// encode wraps the record without marshalling the envelope: json.Marshal
// would scan and copy the record's JSON once more (a sixth of the ingest's
// CPU at fleet scale went to the envelope). The bytes are the same.
func encode(v any) ([]byte, error) {
	d, err := json.Marshal(v)
	if err != nil {
		return nil, fmt.Errorf("encode record: %w", err)
	}
	out := make([]byte, 0, len(envelopeHead)+len(d)+1)
	out = append(out, envelopeHead...)
	out = append(out, d...)
	return append(out, '}'), nil
}

func decode(raw []byte, v any) error {
	// The usual shape is decoded in one pass; anything else (other field
	// order, spacing, versions) takes the general path below.
	if d, ok := bytes.CutPrefix(raw, []byte(envelopeHead)); ok && len(d) > 1 && d[len(d)-1] == '}' {
		if json.Unmarshal(d[:len(d)-1], v) == nil {
			return nil
		}
	}
	var e envelope
	if err := json.Unmarshal(raw, &e); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	if e.V != recordVersion {
		return fmt.Errorf("%w %d (this build reads version %d)", errUnsupportedVersion, e.V, recordVersion)
	}
	if len(e.D) == 0 {
		return errors.New("decode record: envelope has no data")
	}
	if err := json.Unmarshal(e.D, v); err != nil {
		return fmt.Errorf("decode record: %w", err)
	}
	return nil
}

// getRaw returns a copy of the value at key, or ErrNotFound.
func getRaw(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	return item.ValueCopy(nil)
}

// getJSON decodes the record at key into v, or returns ErrNotFound.
func getJSON(txn *badger.Txn, key []byte, v any) error {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	if err != nil {
		return err
	}
	return item.Value(func(b []byte) error { return decode(b, v) })
}

// getJSONRaw is getJSON that also returns the stored bytes, for setChanged.
func getJSONRaw(txn *badger.Txn, key []byte, v any) ([]byte, error) {
	raw, err := getRaw(txn, key)
	if err != nil {
		return nil, err
	}
	return raw, decode(raw, v)
}

// errUnchanged aborts a read-modify-write whose record came out as it was:
// update then neither commits nor waits for a sync. A duplicate QoS-1
// delivery (a progress report seen before) changes nothing, and rewriting
// the record cost a commit and a sync per duplicate.
var errUnchanged = errors.New("record unchanged")

// setChanged writes v at key unless it encodes to old, the bytes read in
// the same transaction (then errUnchanged).
func setChanged(txn *badger.Txn, key, old []byte, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	if bytes.Equal(b, old) {
		return errUnchanged
	}
	return txn.Set(key, b)
}

func setJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := encode(v)
	if err != nil {
		return err
	}
	return txn.Set(key, b)
}

// absent returns ErrExists if key is present. Reading it inside the write
// transaction makes a concurrent insert of the same key a conflict.
func absent(txn *badger.Txn, key []byte) error {
	_, err := txn.Get(key)
	switch {
	case err == nil:
		return ErrExists
	case errors.Is(err, badger.ErrKeyNotFound):
		return nil
	default:
		return err
	}
}

// present returns ErrNotFound unless key exists, without reading its value.
func present(txn *badger.Txn, key []byte) error {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return ErrNotFound
	}
	return err
}
