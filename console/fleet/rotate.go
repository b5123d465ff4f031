package fleet

import (
	"encoding/json"
	"errors"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// CreateConsoleJob is CreateJob for the kinds only the console starts
// (wire's table: not Operator), such as a key rotation, which the
// repository lifecycle (console/repos) starts after sealing the new
// password at rest.
func (f *Fleet) CreateConsoleJob(req JobRequest) (storage.Job, error) {
	req.console = true
	return f.CreateJob(req)
}

// sealRotation is what a rotate_key command carries: the repository as
// the host opens it (used: the maintenance URL and environment on the
// maintenance host) with the password every endpoint uses (main's: the
// key being replaced), and, sealed for SealedToRepo, the same with the
// pending new password (RepoSecrets.NewPassword).
func sealRotation(h storage.Host, main, used storage.RepoSecrets) (storage.RepoSecrets, string, error) {
	if main.NewPassword == "" {
		return used, "", errors.New("no new password is waiting for this repository (start a rotation again)")
	}
	used.Password = main.Password
	plain, err := json.Marshal(wire.RepoSpec{URL: used.URL, Password: main.NewPassword, Env: used.Env})
	if err != nil {
		return used, "", err
	}
	sealed, err := seal.Seal(h.PublicKey, plain)
	return used, sealed, err
}
