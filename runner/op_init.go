package runner

import (
	"encoding/json"
	"errors"
	"fmt"
)

// InitArgs are the arguments of an init.
type InitArgs struct {
	// ChunkerFrom, when set, is the repository whose chunker parameters
	// the new one takes (--copy-chunker-params --from-repository-file):
	// a copy destination made so, the files copied into it deduplicate
	// with those backed up into it directly. (wire has no field for it
	// yet: the console cannot ask for it.)
	ChunkerFrom *Repo
}

// opInit is `restic init --json`.
type opInit struct{}

func (opInit) argv(spec *Spec, _ resticVersion) ([]string, error) {
	from := spec.Init.ChunkerFrom
	if from == nil {
		return []string{"init", "--json"}, nil
	}
	if err := validateRepo(*from); err != nil {
		return nil, fmt.Errorf("the repository to take the chunker parameters from: %w", err)
	}
	if repoKey(from.URL) == repoKey(spec.Repo.URL) {
		return nil, errors.New("an init cannot take the chunker parameters of the repository it creates")
	}
	if err := checkPairedEnv(spec.Repo, *from); err != nil {
		return nil, err
	}
	return []string{"init", "--json", "--copy-chunker-params"}, nil
}

// repos: the new repository, and the one whose chunker parameters it takes.
func (opInit) repos(spec *Spec) (Repo, *Repo) { return spec.Repo, spec.Init.ChunkerFrom }

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
