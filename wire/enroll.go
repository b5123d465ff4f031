package wire

import "fmt"

// EnrollRequest is what an agent sends to the console's POST /api/v1/enroll
// (HTTP, not MQTT: it is how the agent gets its MQTT credential). It
// carries either a one-time Token, made for a host the console already
// has, or a reusable enrolment Key, with which the console makes the host:
// named Name (default: Hostname) and labelled with the key's labels and,
// if the key allows, Labels.
type EnrollRequest struct {
	Token     string            `json:"token,omitempty"`
	Key       string            `json:"key,omitempty"`
	Name      string            `json:"name,omitempty"`
	Labels    map[string]string `json:"labels,omitempty"`
	PublicKey string            `json:"public_key"` // age X25519 recipient
	Hostname  string            `json:"hostname"`
	OS        string            `json:"os"`
	Arch      string            `json:"arch"`
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
	MaxEnrollToken    = 256 // token, and an enrolment key
	MaxEnrollKey      = 256 // public_key
	MaxEnrollName     = 200 // a host's name in the console
	MaxEnrollHostname = 255
	MaxEnrollPlatform = 64 // os, arch
)

// Validate bounds the request's strings (their content is checked where it
// is used: the token or key by its hash, the public key as an age
// recipient) and checks the labels. A request carries a token or a key,
// not both; a name and labels only come with a key (a token's host has
// its name already).
func (r *EnrollRequest) Validate() error {
	if r.Token != "" && r.Key != "" {
		return fmt.Errorf("%w: enroll: give a token or a key, not both", ErrInvalid)
	}
	if r.Key == "" && (r.Name != "" || len(r.Labels) > 0) {
		return fmt.Errorf("%w: enroll: a name and labels come with an enrolment key only (a token's host is named in the console)", ErrInvalid)
	}
	if err := ValidateLabels(r.Labels); err != nil {
		return fmt.Errorf("%w: %w", ErrInvalid, err)
	}
	for _, f := range []struct {
		name, v string
		max     int
	}{
		{"token", r.Token, MaxEnrollToken},
		{"key", r.Key, MaxEnrollToken},
		{"name", r.Name, MaxEnrollName},
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
