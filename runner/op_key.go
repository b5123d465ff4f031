package runner

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"strings"

	"github.com/restic-manager/restic-manager/wire"
)

// KindRotateKey is a key rotation (wire.JobRotateKey).
const KindRotateKey = wire.JobRotateKey

// RotateKeyArgs are a key rotation's: the new password; Spec.Repo holds
// the old one.
type RotateKeyArgs struct {
	NewPassword string
}

// opRotateKey is three restic runs, the same in 0.14 and 0.18:
//
//	key list --json           (old password: which key it opens)
//	key passwd --new-password-file F
//	key list --json           (new password: it opens the repository, and
//	                           the old key is gone)
//
// `key passwd` adds the new key, then removes the one the old password
// opened. A run that finds the old password refused but the new one
// accepted reports success with AlreadyRotated: the rotation ran before
// and its result was lost, and the console must still switch.
type opRotateKey struct{}

func (opRotateKey) progress() bool { return false }
func (opRotateKey) exclusive()     {}

func (opRotateKey) argv(spec *Spec, _ resticVersion) ([]string, error) {
	pw := spec.RotateKey.NewPassword
	if err := validateRepo(Repo{URL: spec.Repo.URL, Password: pw}); err != nil {
		return nil, fmt.Errorf("the new password: %w", err)
	}
	if pw == spec.Repo.Password {
		return nil, errors.New("the new password is the repository's current one")
	}
	return []string{"key", "passwd"}, nil
}

// complete is not used: runAll runs restic itself.
func (opRotateKey) complete(out *output, code int, res *Result) { opCapture{}.complete(out, code, res) }

// keyEntry is one key of `key list --json` (short IDs on 0.14).
type keyEntry struct {
	Current bool   `json:"current"`
	ID      string `json:"id"`
}

func (opRotateKey) runAll(ctx context.Context, r *Runner, spec *Spec, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	newSpec := *spec
	newSpec.Repo.Password = spec.RotateKey.NewPassword
	var out wire.RotateKeyOutput

	// list runs `key list --json` with s's password.
	list := func(s *Spec, hooks Hooks) ([]keyEntry, Result) {
		p := &captureParser{}
		lres := r.execute(ctx, s, opCapture{p}, v, []string{"key", "list", "--json"}, hooks, sec, log, Result{ExitCode: -1, StartedAt: res.StartedAt})
		if lres.Status != StatusSucceeded {
			return nil, lres
		}
		var keys []keyEntry
		if err := json.Unmarshal([]byte(strings.TrimSpace(p.text())), &keys); err != nil {
			failWith(&lres, "cannot read restic's key list: "+err.Error())
			return nil, lres
		}
		return keys, lres
	}
	current := func(keys []keyEntry) string {
		for _, k := range keys {
			if k.Current {
				return k.ID
			}
		}
		return ""
	}
	done := func(r Result, keys []keyEntry) Result {
		out.KeyID, out.Keys, out.NewPasswordWorks = current(keys), len(keys), true
		r.Output = mustJSON(out)
		return r
	}

	oldKeys, lres := list(spec, h) // h: OnStart fires once, with the first run
	if lres.Status != StatusSucceeded {
		if ctx.Err() == nil && wrongPassword(lres) {
			if keys, nres := list(&newSpec, Hooks{}); nres.Status == StatusSucceeded {
				out.AlreadyRotated = true
				return done(nres, keys)
			}
		}
		return lres
	}
	out.OldKeyID = current(oldKeys)

	dir, cleanup, err := r.secretDir()
	if err != nil {
		return failed(lres, "cannot prepare the directory for secret files: "+err.Error())
	}
	defer cleanup()
	pwFile, err := writeSecret(dir, "restic-new-pw-*", spec.RotateKey.NewPassword)
	if err != nil {
		return failed(lres, "cannot write the new password file: "+err.Error())
	}
	defer os.Remove(pwFile)
	pres := r.execute(ctx, spec, opCapture{}, v, append(argv, "--new-password-file", pwFile), Hooks{}, sec, log, lres)

	keys, nres := list(&newSpec, Hooks{})
	if pres.Status != StatusSucceeded {
		// restic may have added the new key before it failed: the console
		// must know whether the new password opens the repository.
		if nres.Status == StatusSucceeded {
			pres = done(pres, keys)
		} else {
			pres.Output = mustJSON(out)
		}
		return pres
	}
	if nres.Status != StatusSucceeded {
		nres.Error = "restic changed the key, but the new password does not open the repository: " + nres.Error
		return nres
	}
	nres = done(nres, keys)
	for _, k := range keys {
		if out.OldKeyID != "" && k.ID == out.OldKeyID {
			failWith(&nres, fmt.Sprintf("restic added the new key, but the old key %s is still there", out.OldKeyID))
		}
	}
	return nres
}

// wrongPassword tells whether restic refused the password (exit code 12
// from 0.17; the message in every version).
func wrongPassword(res Result) bool {
	return res.ExitCode == 12 || strings.Contains(res.Error+"\n"+res.StderrTail, "wrong password")
}
