package ui

import (
	"net/http"
	"sort"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/view"
)

// ---- managing the console's objects in the browser: the repositories
// (everyone reads; admins add), the notification channels, integration
// accounts and settings (admins), and the audit log (admins). The pages
// render what is stored; every change goes through /api/v1 from the
// script, whose answers (errors included) the forms show by their fields.

// repoRow is one repository in the list.
type repoRow struct {
	view.Repo
	HostNames []string // the access list, by name where the host exists
	MaintName string   // the maintenance host's name ("" none)
	CopyLag   []copyLagCell
}

// copyLagCell is one copy destination's lag, as the list shows it.
type copyLagCell struct {
	ToID, ToName   string
	Missing, Limit int
}

// hostPick is a host the add-a-repository form offers for the access list
// and the maintenance host.
type hostPick struct {
	ID, Name string
	Online   bool
}

// manageHostsShown bounds the hosts the add-a-repository form lists; a
// larger fleet binds hosts by policy, or on the repository's page by ID.
const manageHostsShown = 1000

func (s *Server) pageRepos(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	repos, err := s.store.ListRepos()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	sort.SliceStable(repos, func(i, j int) bool { return repos[i].Name < repos[j].Name })
	names := map[string]string{}
	hostName := func(id string) string {
		if n, ok := names[id]; ok {
			return n
		}
		n := id
		if h, err := s.store.GetHost(id); err == nil && h.Name != "" {
			n = h.Name
		}
		names[id] = n
		return n
	}
	repoNames := map[string]string{}
	for _, rp := range repos {
		repoNames[rp.ID] = rp.Name
	}
	rows := make([]repoRow, 0, len(repos))
	for _, rp := range repos {
		row := repoRow{Repo: view.RepoOf(rp)}
		for _, id := range rp.Hosts {
			row.HostNames = append(row.HostNames, hostName(id))
		}
		if rp.MaintenanceHostID != "" {
			row.MaintName = hostName(rp.MaintenanceHostID)
		}
		if rp.Health != nil {
			for _, l := range rp.Health.CopyLag {
				to := repoNames[l.ToRepoID]
				if to == "" {
					to = l.ToRepoID
				}
				row.CopyLag = append(row.CopyLag, copyLagCell{ToID: l.ToRepoID, ToName: to, Missing: l.MissingSnapshots, Limit: l.Max})
			}
		}
		rows = append(rows, row)
	}
	data := map[string]any{"User": p, "Repos": rows}
	if p.Can(auth.RoleAdmin) {
		hosts, err := s.store.ListHosts("", manageHostsShown)
		if err != nil {
			s.pageError(w, r, err)
			return
		}
		var picks []hostPick
		for _, h := range hosts {
			if h.Enrolled {
				picks = append(picks, hostPick{ID: h.ID, Name: h.Name, Online: h.Online})
			}
		}
		data["Hosts"] = picks
	}
	s.render(w, "repos.html", data)
}

// channelKinds are the notification channel kinds the form offers.
var channelKinds = []string{"webhook", "email", "ntfy", "gotify", "slack", "discord"}

// pageIntegrations: notification channels, MQTT integration accounts and
// the console's settings (admins).
func (s *Server) pageIntegrations(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	if !p.Can(auth.RoleAdmin) {
		s.pageError(w, r, errForbiddenPage)
		return
	}
	chans, err := s.store.ListChannels()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	deliveries, err := s.store.ChannelDeliveries()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	users, err := s.store.ListIntegrationUsers()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	sort.SliceStable(chans, func(i, j int) bool { return chans[i].Name < chans[j].Name })
	s.render(w, "integrations.html", map[string]any{"User": p, "Channels": view.ChannelsOf(chans, deliveries),
		"Kinds": channelKinds, "MQTTUsers": view.IntegrationUsersOf(users)})
}

// pageAudit: the audit log (admins), read page by page from the API by
// the script with the filters given here (or in the address).
func (s *Server) pageAudit(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	if !p.Can(auth.RoleAdmin) {
		s.pageError(w, r, errForbiddenPage)
		return
	}
	q := r.URL.Query()
	s.render(w, "audit.html", map[string]any{"User": p, "Actor": q.Get("actor"), "Target": q.Get("target")})
}
