package wire

// JobRotateKey changes a repository's password (ARCHITECTURE.md,
// "Copies"; the repository lifecycle of issue 18): `restic key passwd`
// adds a key for the new password and removes the key the old one opened,
// on the maintenance path (an admin starts it through
// POST /repos/{id}/rotate-password, never POST /jobs). The command carries
// the repository as it is (SealedRepo, old password) and the same
// repository with the new password (SealedToRepo). From the job's success
// on, the console seals the new password into every job.
const JobRotateKey = "rotate_key"

// RotateKeyOutput is a rotate_key job's output.
type RotateKeyOutput struct {
	// OldKeyID is the key the old password opened (removed); KeyID the
	// new password's.
	OldKeyID string `json:"old_key_id,omitempty"`
	KeyID    string `json:"key_id,omitempty"`
	// Keys is how many keys the repository has afterwards (other
	// passwords, e.g. an operator's own, are left alone).
	Keys int `json:"keys"`
	// NewPasswordWorks is true when the new password opens the
	// repository: on success, and on a failure after restic added the new
	// key (the console then switches to it: the old one may be gone).
	NewPasswordWorks bool `json:"new_password_works"`
	// AlreadyRotated: the old password no longer opened the repository
	// but the new one did (a rotation whose result was lost, run again).
	AlreadyRotated bool `json:"already_rotated,omitempty"`
}
