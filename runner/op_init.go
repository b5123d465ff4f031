package runner

import (
	"encoding/json"
)

// opInit is `restic init --json`.
type opInit struct{}

func (opInit) argv(*Spec, resticVersion) ([]string, error) { return []string{"init", "--json"}, nil }

func (opInit) progress() bool { return false }

// initOutput is Result.Output of init.
type initOutput struct {
	ID         string `json:"id"`
	Repository string `json:"repository,omitempty"`
}

func (opInit) complete(out *output, code int, res *Result) {
	if code != 0 {
		failCode(out, code, res)
		return
	}
	res.Status = StatusSucceeded
	// {"message_type":"initialized","id":…,"repository":…} since restic 0.15.
	raw := out.message("initialized")
	if raw == nil {
		return
	}
	var m initOutput
	if json.Unmarshal(raw, &m) != nil || m.ID == "" {
		return
	}
	// restic strips the URL's password itself; redact again all the same.
	m.Repository = out.sec.redact(m.Repository)
	res.Output, _ = json.Marshal(m)
}
