package policy

import (
	"encoding/json"
	"errors"
	"strings"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/console/repos"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// TemplateRequest is a repository template in a policy request.
type TemplateRequest struct {
	URL  string            `json:"url"`
	Env  map[string]string `json:"env"`
	Init bool              `json:"init"`
}

// checkTemplate validates a repository template.
func checkTemplate(t *TemplateRequest) (*storage.RepoTemplate, error) {
	u := strings.TrimSpace(t.URL)
	switch {
	case u == "" || strings.HasPrefix(u, "-") || strings.ContainsAny(u, "\x00\n\r"):
		return nil, input.Errorf("repo_template.url is required and must not start with '-'")
	case !strings.Contains(u, "{host}") && !strings.Contains(u, "{host_id}"):
		return nil, input.Errorf("repo_template.url must contain {host} or {host_id} (one repository per host; for one shared repository give repo_id)")
	}
	if err := wire.CheckRepoEnv(t.Env); err != nil {
		return nil, fleet.ArgsInput(err)
	}
	// Stored sealed, shown without a password (runner.RedactURL).
	return &storage.RepoTemplate{URL: runner.RedactURL(u), SecretURL: u, Env: t.Env, Init: t.Init}, nil
}

// slug makes a host name safe inside a repository URL: lower case letters,
// digits, '.', '_' and '-'; anything else becomes '-'.
func slug(s string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(s) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '.' || r == '_' || r == '-' {
			b.WriteRune(r)
		} else {
			b.WriteByte('-')
		}
	}
	return strings.Trim(b.String(), "-.")
}

// expand fills a template URL for a host.
func expand(url string, h storage.Host) string {
	return strings.NewReplacer("{host}", slug(h.Name), "{host_id}", h.ID).Replace(url)
}

// ensureRepo makes (once) the repository a template policy gives host h,
// with a generated password, bound to h alone, and starts its init job; an
// init that failed or expired is started again. A host that enrols again
// keeps its ID and so its repository.
func (p *Policies) ensureRepo(pol storage.Policy, h storage.Host) (string, error) {
	pr, err := p.store.GetPolicyRepo(pol.ID, h.ID)
	switch {
	case err == nil:
		if _, err := p.store.GetRepo(pr.RepoID); err == nil {
			return pr.RepoID, p.ensureInit(pol, h, pr)
		}
		// Deleted by an admin since: make a new one.
	case !errors.Is(err, storage.ErrNotFound):
		return "", err
	}
	env, err := p.store.TemplateEnv(pol)
	if err != nil {
		return "", err
	}
	tmpl, err := p.store.TemplateURL(pol)
	if err != nil {
		return "", err
	}
	name := pol.Name + " · " + h.Name
	if len(name) > 200 {
		name = name[:200]
	}
	rp, err := p.repos.CreateRepo(repos.RepoRequest{Name: name, URL: expand(tmpl, h),
		Password: token.Random(24), Env: env, Hosts: []string{h.ID}})
	if err != nil {
		return "", err
	}
	pr = storage.PolicyRepo{RepoID: rp.ID}
	if err := p.store.PutPolicyRepo(pol.ID, h.ID, pr); err != nil {
		return "", err
	}
	p.log.Info("repository made for a host by its policy", "policy_id", pol.ID, "host_id", h.ID, "repo_id", rp.ID, "url", rp.DisplayURL)
	return rp.ID, p.ensureInit(pol, h, pr)
}

// ensureInit starts the repository's init job unless one succeeded or is
// on its way.
func (p *Policies) ensureInit(pol storage.Policy, h storage.Host, pr storage.PolicyRepo) error {
	if !pol.RepoTemplate.Init || !h.Enrolled {
		return nil
	}
	if pr.InitJobID != "" {
		if j, err := p.store.GetJob(pr.InitJobID); err == nil && (j.Status == storage.JobSucceeded || !storage.TerminalStatus(j.Status)) {
			return nil
		}
	}
	req := fleet.JobRequest{HostID: h.ID, RepoID: pr.RepoID, Kind: wire.JobInit, ActorKind: "system", Actor: "policy:" + pol.ID}
	if to := copyPartner(pol); to != "" {
		// The host's repository is a copy source: made with its
		// destination's chunker parameters, the copies deduplicate
		// there (restic init --copy-chunker-params). A destination not
		// initialised yet fails this init; the next apply starts it again.
		req.Args, _ = json.Marshal(wire.InitArgs{CopyChunkerParamsFrom: to})
	}
	j, err := p.f.CreateJob(req)
	if err != nil {
		return err
	}
	pr.InitJobID = j.ID
	return p.store.PutPolicyRepo(pol.ID, h.ID, pr)
}

// copyPartner is the repository a policy copies its hosts' snapshots to:
// its copy_to_repo_id, else the destination of its first copy schedule
// ("" when it copies nowhere).
func copyPartner(pol storage.Policy) string {
	if pol.CopyToRepoID != "" {
		return pol.CopyToRepoID
	}
	for _, s := range pol.Schedules {
		if s.Kind == wire.JobCopy && s.ToRepoID != "" {
			return s.ToRepoID
		}
	}
	return ""
}

// repoFor is the repository a policy's schedules use on host h ("" when a
// template's repository could not be made).
func (p *Policies) repoFor(pol storage.Policy, h storage.Host) string {
	if pol.RepoTemplate == nil {
		return pol.RepoID
	}
	pr, err := p.store.GetPolicyRepo(pol.ID, h.ID)
	if err != nil {
		return ""
	}
	return pr.RepoID
}
