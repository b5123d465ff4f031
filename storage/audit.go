package storage

import (
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
)

// AuditEntry records one state-changing action.
type AuditEntry struct {
	ID     string    `json:"id"`
	At     time.Time `json:"at"`
	Actor  string    `json:"actor"`      // user name, or "schedule:<id>", or "agent:<host>"
	Kind   string    `json:"actor_kind"` // user, token, schedule, agent
	Action string    `json:"action"`     // e.g. "POST /api/v1/hosts"
	Target string    `json:"target,omitempty"`
	Remote string    `json:"remote,omitempty"`
	Status int       `json:"status,omitempty"`
	Detail string    `json:"detail,omitempty"`
}

const auditPrefix = "audit/"

// AppendAudit stores an entry under a time-ordered key.
func (s *Store) AppendAudit(e AuditEntry) error {
	e = e.keyed()
	if err := s.update(func(txn *badger.Txn) error { return putAudit(txn, e) }); err != nil {
		return fmt.Errorf("storage: audit: %w", err)
	}
	return nil
}

// Bounds of an audit entry's free-text fields. Entries are kept for a long
// time and some fields come from whoever calls (a login's user name, a
// request path): a 1 MiB name must not become a 1 MiB record.
const (
	MaxAuditField  = 256  // actor, action, target, remote
	MaxAuditDetail = 1024 // detail
)

// Truncate cuts s to at most n bytes without splitting a UTF-8 character,
// marking a cut with "…" (within the n bytes).
func Truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	const mark = "…"
	cut := max(n-len(mark), 0)
	for cut > 0 && !utf8.RuneStart(s[cut]) {
		cut--
	}
	return s[:cut] + mark
}

// keyed fills in the time and the time-ordered ID when they are unset, and
// bounds the free-text fields.
func (e AuditEntry) keyed() AuditEntry {
	e.Actor = Truncate(e.Actor, MaxAuditField)
	e.Kind = Truncate(e.Kind, MaxAuditField)
	e.Action = Truncate(e.Action, MaxAuditField)
	e.Target = Truncate(e.Target, MaxAuditField)
	e.Remote = Truncate(e.Remote, MaxAuditField)
	e.Detail = Truncate(e.Detail, MaxAuditDetail)
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	if e.ID == "" {
		b := make([]byte, 6)
		_, _ = rand.Read(b)
		e.ID = idxTime(e.At) + "-" + hex.EncodeToString(b)
	}
	return e
}

// putAudit writes a keyed entry in txn, so a change and its audit record
// commit (and cost a sync) together.
func putAudit(txn *badger.Txn, e AuditEntry) error {
	return setJSON(txn, []byte(auditPrefix+e.ID), e)
}

// AuditQuery selects audit entries newest first; Actor and Target filter
// when set (Target: exactly, e.g. "/api/v1/policies/pol-1", an object's
// history); Since and Until bound the entries' times (both inclusive) when
// set.
type AuditQuery struct {
	Actor  string
	Target string
	Since  time.Time
	Until  time.Time
	Limit  int
	Cursor string
}

// ListAudit returns one page of the audit log, newest first.
func (s *Store) ListAudit(q AuditQuery) ([]AuditEntry, string, error) {
	limit := q.Limit
	if limit <= 0 {
		limit = 100
	}
	limit = min(limit, 1000)
	out := []AuditEntry{}
	var next string
	err := s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Reverse = true
		opts.Prefix = []byte(auditPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		seek := append([]byte(auditPrefix), 0xFF)
		if q.Cursor != "" {
			c, err := base64.RawURLEncoding.DecodeString(q.Cursor)
			if err != nil || len(c) <= len(auditPrefix) || string(c[:len(auditPrefix)]) != auditPrefix {
				return fmt.Errorf("bad cursor: %w", ErrInvalid)
			}
			seek = c
		}
		// Keys begin with the entry's time, so a time range is a key range:
		// start at Until (unless the cursor is already older) and stop at
		// the first key before Since.
		if !q.Until.IsZero() {
			if u := []byte(auditPrefix + idxTime(q.Until) + "~"); string(u) < string(seek) {
				seek = u
			}
		}
		var stop string
		if !q.Since.IsZero() {
			stop = auditPrefix + idxTime(q.Since)
		}
		for it.Seek(seek); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if q.Cursor != "" && string(k) == string(seek) {
				continue
			}
			if stop != "" && string(k) < stop {
				break
			}
			var e AuditEntry
			if err := it.Item().Value(func(b []byte) error { return decode(b, &e) }); err != nil {
				return err
			}
			if q.Actor != "" && e.Actor != q.Actor || q.Target != "" && e.Target != q.Target ||
				!q.Since.IsZero() && e.At.Before(q.Since) || !q.Until.IsZero() && e.At.After(q.Until) {
				continue
			}
			if len(out) == limit {
				// The next page starts strictly after the last entry returned.
				next = base64.RawURLEncoding.EncodeToString([]byte(auditPrefix + out[len(out)-1].ID))
				return nil
			}
			out = append(out, e)
		}
		return nil
	})
	if err != nil {
		return nil, "", fmt.Errorf("storage: list audit: %w", err)
	}
	return out, next, nil
}
