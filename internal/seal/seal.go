// Package seal encrypts repository secrets to one agent's X25519 key (age),
// so that only that agent can read them: not the broker, its persistence, nor
// any other subscriber.
package seal

import (
	"bytes"
	"encoding/base64"
	"fmt"
	"io"

	"filippo.io/age"
)

// maxOpened bounds what Open will decrypt: secrets are small.
const maxOpened = 64 << 10

// NewIdentity makes a key pair; the identity string is secret, the recipient
// string is what the console stores.
func NewIdentity() (identity, recipient string, err error) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", "", fmt.Errorf("seal: generate key: %w", err)
	}
	return id.String(), id.Recipient().String(), nil
}

// ValidRecipient reports whether s parses as an age X25519 recipient.
func ValidRecipient(s string) bool {
	_, err := age.ParseX25519Recipient(s)
	return err == nil
}

// Seal encrypts plaintext to recipient and returns base64 text.
func Seal(recipient string, plaintext []byte) (string, error) {
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		return "", fmt.Errorf("seal: recipient: %w", err)
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return "", fmt.Errorf("seal: encrypt: %w", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		return "", fmt.Errorf("seal: encrypt: %w", err)
	}
	if err := w.Close(); err != nil {
		return "", fmt.Errorf("seal: encrypt: %w", err)
	}
	return base64.StdEncoding.EncodeToString(buf.Bytes()), nil
}

// Open decrypts what Seal produced with the matching identity.
func Open(identity, sealed string) ([]byte, error) {
	id, err := age.ParseX25519Identity(identity)
	if err != nil {
		return nil, fmt.Errorf("seal: identity: %w", err)
	}
	ct, err := base64.StdEncoding.DecodeString(sealed)
	if err != nil {
		return nil, fmt.Errorf("seal: decode: %w", err)
	}
	r, err := age.Decrypt(bytes.NewReader(ct), id)
	if err != nil {
		return nil, fmt.Errorf("seal: decrypt: %w", err)
	}
	out, err := io.ReadAll(io.LimitReader(r, maxOpened+1))
	if err != nil {
		return nil, fmt.Errorf("seal: decrypt: %w", err)
	}
	if len(out) > maxOpened {
		return nil, fmt.Errorf("seal: plaintext over %d bytes", maxOpened)
	}
	return out, nil
}
