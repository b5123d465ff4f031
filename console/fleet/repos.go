package fleet

import (
	"net/url"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// RepoRequest is a repository to create. The URL, password and environment
// are secrets: sealed at rest, sent only sealed to an agent.
type RepoRequest struct {
	Name        string              `json:"name"`
	URL         string              `json:"url"`
	Password    string              `json:"password"`
	Env         map[string]string   `json:"env"`
	Maintenance *MaintenanceRequest `json:"maintenance"`
}

// MaintenanceRequest names the host that alone runs a repository's
// destructive work, with credentials that may delete.
type MaintenanceRequest struct {
	URL      string            `json:"url"`
	Password string            `json:"password"`
	Env      map[string]string `json:"env"`
	HostID   string            `json:"host_id"`
}

// CreateRepo records a repository and seals its secrets.
func (f *Fleet) CreateRepo(req RepoRequest) (storage.Repo, error) {
	req.Name, req.URL = strings.TrimSpace(req.Name), strings.TrimSpace(req.URL)
	repo := storage.Repo{ID: token.NewID("repo"), Name: req.Name, DisplayURL: redactURL(req.URL), CreatedAt: time.Now().UTC()}
	secrets := storage.RepoSecrets{URL: req.URL, Password: req.Password, Env: req.Env}
	if m := req.Maintenance; m != nil {
		m.URL = strings.TrimSpace(m.URL)
		if m.URL == "" || strings.HasPrefix(m.URL, "-") || strings.ContainsAny(m.URL, "\x00\n\r") || m.HostID == "" {
			return storage.Repo{}, Invalid("maintenance needs url and host_id")
		}
		if _, err := f.store.GetHost(m.HostID); err != nil {
			return storage.Repo{}, Invalid("maintenance host %q does not exist", m.HostID)
		}
		if m.Password == "" {
			m.Password = req.Password // the same repository key, another server
		}
		repo.MaintenanceHostID, repo.MaintenanceDisplay = m.HostID, redactURL(m.URL)
		secrets.Maintenance = &storage.RepoSecrets{URL: m.URL, Password: m.Password, Env: m.Env}
	}
	switch {
	case req.Name == "":
		return storage.Repo{}, Invalid("name is required")
	case req.URL == "" || strings.HasPrefix(req.URL, "-") || strings.ContainsAny(req.URL, "\x00\n\r"):
		return storage.Repo{}, Invalid("url is required and must not start with '-'")
	case req.Password == "":
		return storage.Repo{}, Invalid("password is required")
	}
	return f.store.CreateRepo(repo, secrets)
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
