package repos

import (
	"errors"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// RepoRequest is a repository to create or change. The URL, password and
// environment are secrets: sealed at rest, sent only sealed to an agent
// bound to the repository. Hosts is its access list.
type RepoRequest struct {
	Name        string              `json:"name"`
	URL         string              `json:"url"`
	Password    string              `json:"password"`
	Env         map[string]string   `json:"env"`
	Maintenance *MaintenanceRequest `json:"maintenance"`
	Hosts       []string            `json:"hosts"`
}

// RepoChange is a partial change of a repository: nil fields stay.
type RepoChange struct {
	Name        *string             `json:"name"`
	URL         *string             `json:"url"`
	Password    *string             `json:"password"`
	Env         map[string]string   `json:"env"`
	Maintenance *MaintenanceRequest `json:"maintenance"`
	Hosts       *[]string           `json:"hosts"`
}

// MaintenanceRequest names the host that alone runs a repository's
// destructive work, with credentials that may delete. An empty host_id
// removes it (the repository's own credentials delete again).
type MaintenanceRequest struct {
	URL      string            `json:"url"`
	Password string            `json:"password"`
	Env      map[string]string `json:"env"`
	HostID   string            `json:"host_id"`
}

// CreateRepo records a repository and seals its secrets.
func (rs *Repos) CreateRepo(req RepoRequest) (storage.Repo, error) {
	req.Name, req.URL = strings.TrimSpace(req.Name), strings.TrimSpace(req.URL)
	repo := storage.Repo{ID: token.NewID("repo"), Name: req.Name, DisplayURL: redactURL(req.URL), CreatedAt: time.Now().UTC(), HostsListed: true}
	secrets := storage.RepoSecrets{URL: req.URL, Password: req.Password, Env: req.Env}
	if err := checkRepoFields(req.Name, req.URL, req.Password, req.Env); err != nil {
		return storage.Repo{}, err
	}
	if err := rs.setMaintenance(&repo, &secrets, req.Maintenance); err != nil {
		return storage.Repo{}, err
	}
	hosts, err := rs.checkHosts(req.Hosts)
	if err != nil {
		return storage.Repo{}, err
	}
	repo.Hosts = hosts
	return rs.store.CreateRepo(repo, secrets)
}

// UpdateRepo changes a repository: its name, secrets, maintenance host or
// access list. A host whose schedules use the repository stays on the list.
func (rs *Repos) UpdateRepo(id string, ch RepoChange) (storage.Repo, error) {
	var hosts []string
	if ch.Hosts != nil {
		var err error
		if hosts, err = rs.checkHosts(*ch.Hosts); err != nil {
			return storage.Repo{}, err
		}
		if err := rs.scheduledOff(id, hosts); err != nil {
			return storage.Repo{}, err
		}
	}
	return rs.store.UpdateRepoSecrets(id, func(r *storage.Repo, sec *storage.RepoSecrets) error {
		if ch.Name != nil {
			r.Name = strings.TrimSpace(*ch.Name)
		}
		if ch.URL != nil {
			sec.URL = strings.TrimSpace(*ch.URL)
			r.DisplayURL = redactURL(sec.URL)
		}
		if ch.Password != nil {
			sec.Password = *ch.Password
		}
		if ch.Env != nil {
			sec.Env = ch.Env
		}
		if err := checkRepoFields(r.Name, sec.URL, sec.Password, sec.Env); err != nil {
			return err
		}
		if ch.Maintenance != nil {
			if ch.Maintenance.HostID == "" {
				r.MaintenanceHostID, r.MaintenanceDisplay, sec.Maintenance = "", "", nil
			} else if err := rs.setMaintenance(r, sec, ch.Maintenance); err != nil {
				return err
			}
		}
		if ch.Hosts != nil {
			r.Hosts, r.HostsListed = hosts, true
		}
		return nil
	})
}

// DeleteRepo removes a repository that no schedule uses any more.
func (rs *Repos) DeleteRepo(id string) error {
	if _, err := rs.store.GetRepo(id); err != nil {
		return err
	}
	if err := rs.scheduledOff(id, nil); err != nil {
		return err
	}
	if err := rs.policyUses(id); err != nil {
		return err
	}
	if rs.Rotating(id) {
		return input.Conflictf("a key rotation of this repository is under way: wait for its job to end")
	}
	return rs.store.DeleteRepo(id)
}

// scheduledOff refuses an access list that leaves out a host whose
// schedules use the repository (keep is the new list).
func (rs *Repos) scheduledOff(repoID string, keep []string) error {
	var inUse error
	rs.fleet.EachHost(rs.ctx, func(h storage.Host) {
		if inUse != nil || slices.Contains(keep, h.ID) {
			return
		}
		hs, err := rs.store.GetSchedules(h.ID)
		if err != nil {
			return
		}
		for _, s := range hs.Schedules {
			if s.RepoID == repoID {
				inUse = input.Conflictf("schedule %q of host %s uses this repository: change that schedule first", s.Name, h.ID)
				return
			}
		}
		if keep != nil {
			return // an access list change: policy schedules bind by policy
		}
		for _, s := range hs.Policy {
			if s.RepoID == repoID {
				inUse = input.Conflictf("schedule %q that policy %s gives host %s uses this repository: change or delete that policy first", s.Name, s.PolicyID, h.ID)
				return
			}
		}
	})
	return inUse
}

// IsMaintenanceHost reports whether a host runs some repository's
// destructive work (and so holds credentials that may delete).
func (rs *Repos) IsMaintenanceHost(hostID string) (bool, error) {
	repos, err := rs.store.ListRepos()
	if err != nil {
		return false, err
	}
	for _, r := range repos {
		if r.MaintenanceHostID == hostID {
			return true, nil
		}
	}
	return false, nil
}

func checkRepoFields(name, url, password string, env map[string]string) error {
	switch {
	case name == "" || len(name) > 200:
		return fleet.Invalid("name is required (at most 200 characters)")
	case url == "" || strings.HasPrefix(url, "-") || strings.ContainsAny(url, "\x00\n\r"):
		return fleet.Invalid("url is required and must not start with '-'")
	case password == "":
		return fleet.Invalid("password is required")
	}
	return fleet.ArgsInput(wire.CheckRepoEnv(env))
}

func (rs *Repos) setMaintenance(repo *storage.Repo, sec *storage.RepoSecrets, m *MaintenanceRequest) error {
	if m == nil {
		return nil
	}
	m.URL = strings.TrimSpace(m.URL)
	if m.URL == "" || strings.HasPrefix(m.URL, "-") || strings.ContainsAny(m.URL, "\x00\n\r") || m.HostID == "" {
		return fleet.Invalid("maintenance needs url and host_id")
	}
	if _, err := rs.store.GetHost(m.HostID); err != nil {
		if errors.Is(err, storage.ErrNotFound) {
			return fleet.Invalid("maintenance host %q does not exist", m.HostID)
		}
		return err
	}
	if err := fleet.ArgsInput(wire.CheckRepoEnv(m.Env)); err != nil {
		return err
	}
	if m.Password == "" {
		m.Password = sec.Password // the same repository key, another server
	}
	repo.MaintenanceHostID, repo.MaintenanceDisplay = m.HostID, redactURL(m.URL)
	sec.Maintenance = &storage.RepoSecrets{URL: m.URL, Password: m.Password, Env: m.Env}
	return nil
}

// checkHosts checks an access list: existing hosts, no repeats, sorted.
func (rs *Repos) checkHosts(ids []string) ([]string, error) {
	out := []string{}
	for _, id := range ids {
		if slices.Contains(out, id) {
			continue
		}
		if _, err := rs.store.GetHost(id); err != nil {
			if errors.Is(err, storage.ErrNotFound) {
				return nil, fleet.Invalid("host %q does not exist", id)
			}
			return nil, err
		}
		out = append(out, id)
	}
	slices.Sort(out)
	return out, nil
}

// redactURL removes any password from a repository URL (rest:https://u:p@…).
func redactURL(raw string) string {
	scheme, rest, ok := strings.Cut(raw, ":")
	if !ok {
		return raw
	}
	u, err := url.Parse(rest)
	if err != nil || u.User == nil {
		return raw
	}
	return scheme + ":" + u.Redacted()
}

// policyUses refuses deleting a repository a policy names (its
// repository, or where it copies to).
func (rs *Repos) policyUses(repoID string) error {
	pols, err := rs.store.ListPolicies()
	if err != nil {
		return err
	}
	for _, p := range pols {
		switch repoID {
		case p.RepoID:
			return input.Conflictf("policy %q (%s) backs up into this repository: change or delete that policy first", p.Name, p.ID)
		case p.CopyToRepoID:
			return input.Conflictf("policy %q (%s) copies into this repository: change or delete that policy first", p.Name, p.ID)
		}
	}
	return nil
}
