package wire

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
