package wire

import "fmt"

// EnrollRequest is what an agent sends to the console's POST /api/v1/enroll
// (HTTP, not MQTT: it is how the agent gets its MQTT credential).
type EnrollRequest struct {
	Token     string `json:"token"`
	PublicKey string `json:"public_key"` // age X25519 recipient
	Hostname  string `json:"hostname"`
	OS        string `json:"os"`
	Arch      string `json:"arch"`
}

// EnrollResponse carries the host's MQTT credential.
type EnrollResponse struct {
	HostID        string `json:"host_id"`
	BrokerURL     string `json:"broker_url"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
}

// Bounds of an enrolment request's strings. An agent fills them from its
// own machine (a DNS name is at most 253 characters, GOOS and GOARCH are
// short words); whoever holds a token could send anything, and the console
// stores and logs them.
const (
	MaxEnrollToken    = 256
	MaxEnrollKey      = 256
	MaxEnrollHostname = 255
	MaxEnrollPlatform = 64 // os, arch
)

// Validate bounds the request's strings (their content is checked where it
// is used: the token by its hash, the key as an age recipient).
func (r *EnrollRequest) Validate() error {
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"token", r.Token, MaxEnrollToken},
		{"public_key", r.PublicKey, MaxEnrollKey},
		{"hostname", r.Hostname, MaxEnrollHostname},
		{"os", r.OS, MaxEnrollPlatform},
		{"arch", r.Arch, MaxEnrollPlatform},
	} {
		if len(f.v) > f.max {
			return fmt.Errorf("%w: enroll: %s: at most %d bytes", ErrInvalid, f.name, f.max)
		}
	}
	return nil
}
