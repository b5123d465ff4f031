// Package token makes the console's secrets and identifiers: high-entropy
// tokens shown once, their stored hashes, and sortable record IDs.
package token

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"strings"

	"github.com/oklog/ulid/v2"
)

// Random returns n random bytes, base64url without padding.
func Random(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("crypto/rand failed: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// Hash is what the store keeps of a token: its SHA-256. Tokens are
// high-entropy, so a fast hash is enough (no password stretching).
func Hash(s string) []byte {
	h := sha256.Sum256([]byte(s))
	return h[:]
}

// NewID makes a sortable, topic-safe ID such as "job-01hx…".
func NewID(kind string) string { return Prefixed(kind + "-") }

// Prefixed makes a sortable, topic-safe ID that starts with prefix (the
// host IDs take wire.HostIDPrefix, which the broker's ACL relies on).
func Prefixed(prefix string) string {
	return prefix + strings.ToLower(ulid.Make().String())
}
