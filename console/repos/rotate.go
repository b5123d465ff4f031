package repos

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A key rotation (issue 18, repository lifecycle) changes the password
// every agent opens a repository with, without a window in which jobs
// fail: the new password is sealed at rest first (RepoSecrets.NewPassword),
// a rotate_key job on the maintenance path adds its key and removes the
// old one (`restic key passwd`; exclusive, so no job of the repository
// runs meanwhile), and the job's end switches the stored password when the
// agent reports the new one opens the repository — also after a failure
// that came after restic added the key, since the old one may be gone.
// Every job sent afterwards carries the new password.

// RotateRequest is POST /repos/{id}/rotate-password.
type RotateRequest struct {
	Password string `json:"password"`
	// HostID runs the rotation when the repository has no maintenance
	// host (default: a bound host that is online).
	HostID string `json:"host_id"`
}

// minRotatedPassword: a new password shorter than this is refused (the
// old one was the operator's choice; a rotation is a chance to fix it).
const minRotatedPassword = 12

// RotatePassword starts a key rotation and returns its job.
func (rs *Repos) RotatePassword(repoID string, req RotateRequest, actorKind, actor string) (storage.Job, error) {
	pw := req.Password
	switch {
	case len(pw) < minRotatedPassword:
		return storage.Job{}, fleet.Invalid("password: at least %d characters", minRotatedPassword)
	case strings.TrimSpace(pw) != pw || strings.ContainsAny(pw, "\x00\n\r"):
		return storage.Job{}, fleet.Invalid("password: no leading or trailing white space and no line breaks (restic's password file drops them)")
	}
	rp, err := rs.store.GetRepo(repoID)
	if err != nil {
		return storage.Job{}, err
	}
	hostID := rp.MaintenanceHostID
	if hostID == "" {
		if hostID, err = rs.boundHost(rp, req.HostID); err != nil {
			return storage.Job{}, err
		}
	}
	_, err = rs.store.UpdateRepoSecrets(repoID, func(_ *storage.Repo, sec *storage.RepoSecrets) error {
		switch {
		case sec.NewPassword != "":
			return input.Conflictf("a key rotation of this repository is under way: wait for its job to end")
		case pw == sec.Password:
			return fleet.Invalid("password: that is the repository's current password")
		}
		sec.NewPassword = pw
		return nil
	})
	if err != nil {
		return storage.Job{}, err
	}
	j, err := rs.fleet.CreateConsoleJob(fleet.JobRequest{HostID: hostID, RepoID: repoID, Kind: wire.JobRotateKey,
		ActorKind: actorKind, Actor: actor})
	if err != nil {
		rs.clearRotation(repoID)
		return storage.Job{}, err
	}
	_, _ = rs.store.UpdateRepo(repoID, func(r *storage.Repo) error { r.RotationJobID = j.ID; return nil })
	rs.log.Info("key rotation started", "repo_id", repoID, "job_id", j.ID, "host_id", j.HostID, "by", actor)
	return j, nil
}

// boundHost picks the host that rotates (or tests) a repository without a
// maintenance host: the one asked for, else an online bound host.
func (rs *Repos) boundHost(rp storage.Repo, asked string) (string, error) {
	if asked != "" {
		if !rs.fleet.MayReceive(rp.ID, asked) {
			return "", fleet.Invalid("host %s is not bound to repository %s", asked, rp.ID)
		}
		return asked, nil
	}
	var online []string
	rs.fleet.EachHost(rs.ctx, func(h storage.Host) {
		if h.Online && h.Enrolled && rs.fleet.MayReceive(rp.ID, h.ID) {
			online = append(online, h.ID)
		}
	})
	if len(online) == 0 {
		return "", fleet.Invalid("no online host is bound to repository %s: give host_id, or bring one online", rp.ID)
	}
	slices.Sort(online)
	if slices.Contains(online, rp.LastHostID) {
		return rp.LastHostID, nil
	}
	return online[0], nil
}

// rotationEnded switches the repository to the new password when the
// agent says it opens the repository, and forgets the pending one either
// way.
func (rs *Repos) rotationEnded(j storage.Job) {
	var out wire.RotateKeyOutput
	_ = json.Unmarshal(j.Output, &out)
	switched := false
	_, err := rs.store.UpdateRepoSecrets(j.RepoID, func(r *storage.Repo, sec *storage.RepoSecrets) error {
		if sec.NewPassword == "" {
			return errNoChange // ended before (a duplicate end)
		}
		r.RotationJobID = ""
		if out.NewPasswordWorks {
			old := sec.Password
			sec.Password = sec.NewPassword
			// A maintenance path with the same key follows; one with a key
			// of its own keeps it.
			if m := sec.Maintenance; m != nil && m.Password == old {
				m.Password = sec.NewPassword
			}
			switched = true
			now := time.Now().UTC()
			r.PasswordRotatedAt = &now
		}
		sec.NewPassword = ""
		return nil
	})
	if errors.Is(err, errNoChange) {
		return
	}
	if err != nil {
		rs.log.Error("key rotation: cannot store its outcome", "repo_id", j.RepoID, "job_id", j.ID, "error", err)
		return
	}
	detail := fmt.Sprintf("job %s %s: the repository keeps its old password", j.ID, j.Status)
	if switched {
		detail = fmt.Sprintf("job %s %s: new key %s, old key %s removed; jobs from now on use the new password", j.ID, j.Status, out.KeyID, out.OldKeyID)
	}
	_ = rs.store.AppendAudit(storage.AuditEntry{At: time.Now().UTC(), Actor: "job:" + j.ID, Kind: "console",
		Action: "rotate repository password", Target: j.RepoID, Detail: detail})
	rs.log.Info("key rotation ended", "repo_id", j.RepoID, "job_id", j.ID, "status", j.Status, "switched", switched)
}

// clearRotation forgets a pending new password (a rotation that could not
// start).
func (rs *Repos) clearRotation(repoID string) {
	_, _ = rs.store.UpdateRepoSecrets(repoID, func(r *storage.Repo, sec *storage.RepoSecrets) error {
		if sec.NewPassword == "" {
			return errNoChange
		}
		sec.NewPassword, r.RotationJobID = "", ""
		return nil
	})
}

// Rotating reports whether a key rotation of the repository is under way.
func (rs *Repos) Rotating(repoID string) bool {
	sec, err := rs.store.RepoSecrets(repoID)
	return err == nil && sec.NewPassword != ""
}
