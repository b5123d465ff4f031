package ui

import (
	"encoding/json"
	"errors"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/hooks"
	"github.com/restic-manager/restic-manager/console/policy"
	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// ---- policies: the list, a policy's page and the editor (admins). The
// pages read the policies through the policy service; every change goes
// through /api/v1/policies from the script.

var errNoPolicies = errors.New("policies are not available on this console")

// policyRow is what the list and a policy's page show of a policy.
type policyRow struct {
	ID, Name string
	Selector []labelLink // as dashboard links, sorted by key
	// SelectorText is the editor's text: key=value lines.
	SelectorText  string
	RepoID        string
	RepoName      string // the existing repository's name (or its ID if gone)
	TemplateURL   string // one repository per host, from this URL
	TemplateShown string // the URL without user information (a password), as shown
	TemplateInit  bool
	TemplateEnv   bool // the template has an environment (never shown)
	Schedules     []policySchedule
	Kinds         string // the schedules' kinds, in order, each once
	RPO           string
	GuardPercent  int
	// CopyTo: the repository a copy follows each backup into ("" none),
	// CopyLagMax the copy_lag alert's threshold.
	CopyTo, CopyToName string
	CopyLagMax         int
	// Drill is the hosts' restore drill cadence (nil: none).
	Drill     *storage.PolicyDrill
	Hosts     int    // matched now
	HostsText string // "1 host", "3 hosts"
}

// policySchedule is a policy's schedule as the page lists it.
type policySchedule struct {
	schedules.Schedule
	Details string // the kind's own fields in words
}

func (s *Server) policyRowOf(p storage.Policy, repoNames map[string]string) policyRow {
	row := policyRow{ID: p.ID, Name: p.Name, RepoID: p.RepoID, GuardPercent: p.ForgetGuardPercent, Drill: p.Drill, Hosts: s.policies.MatchCount(p.Selector)}
	row.HostsText = plural(row.Hosts, "host")
	for _, k := range slices.Sorted(maps.Keys(p.Selector)) {
		term := k + "=" + p.Selector[k]
		row.Selector = append(row.Selector, labelLink{Text: term, URL: dashboardURL("", "", []string{term}, 0)})
		row.SelectorText += term + "\n"
	}
	if p.RepoID != "" {
		row.RepoName = p.RepoID
		if n, ok := repoNames[p.RepoID]; ok {
			row.RepoName = n
		}
	}
	if p.CopyToRepoID != "" {
		row.CopyTo, row.CopyToName, row.CopyLagMax = p.CopyToRepoID, p.CopyToRepoID, p.CopyLagMax
		if n, ok := repoNames[p.CopyToRepoID]; ok {
			row.CopyToName = n
		}
	}
	if t := p.RepoTemplate; t != nil {
		row.TemplateURL, row.TemplateInit, row.TemplateEnv = t.URL, t.Init, len(t.SealedEnv) > 0
		row.TemplateShown = runner.RedactURL(t.URL)
	}
	var kinds []string
	for _, sc := range p.Schedules {
		row.Schedules = append(row.Schedules, policySchedule{Schedule: sc, Details: scheduleDetails(sc)})
		if !slices.Contains(kinds, sc.Kind) {
			kinds = append(kinds, sc.Kind)
		}
	}
	row.Kinds = strings.Join(kinds, ", ")
	if p.RPO > 0 {
		row.RPO = shortDuration(p.RPO)
	}
	return row
}

// shortDuration drops a duration's zero tail: "26h", "1h30m" (still a Go
// duration, as the editor sends it back).
func shortDuration(d time.Duration) string {
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// scheduleDetails spells out a schedule's kind-specific fields.
func scheduleDetails(sc schedules.Schedule) string {
	var parts []string
	switch sc.Kind {
	case wire.JobBackup:
		if len(sc.Paths) > 0 {
			parts = append(parts, strings.Join(sc.Paths, ", "))
		}
		if len(sc.Excludes) > 0 {
			parts = append(parts, "excluding "+strings.Join(sc.Excludes, ", "))
		}
		if len(sc.Tags) > 0 {
			parts = append(parts, "tags "+strings.Join(sc.Tags, ", "))
		}
	case wire.JobCopy:
		parts = append(parts, "to "+sc.ToRepoID)
	case wire.JobForget:
		if r := sc.Retention; r != nil {
			for _, kv := range []struct {
				n string
				v int
			}{{"last", r.KeepLast}, {"hourly", r.KeepHourly}, {"daily", r.KeepDaily}, {"weekly", r.KeepWeekly}, {"monthly", r.KeepMonthly}, {"yearly", r.KeepYearly}} {
				if kv.v > 0 {
					parts = append(parts, "keep "+kv.n+" "+strconv.Itoa(kv.v))
				}
			}
			if r.KeepWithin != "" {
				parts = append(parts, "keep within "+r.KeepWithin)
			}
		}
		if sc.Prune {
			parts = append(parts, "then prune")
		}
	case wire.JobPrune:
		if sc.MaxUnused != "" {
			parts = append(parts, "max unused "+sc.MaxUnused)
		}
	case wire.JobCheck:
		if sc.ReadDataSubset != "" {
			parts = append(parts, "read data subset "+sc.ReadDataSubset)
		}
	}
	return strings.Join(parts, " · ")
}

func (s *Server) repoNames() (map[string]string, []storage.Repo, error) {
	repos, err := s.store.ListRepos()
	if err != nil {
		return nil, nil, err
	}
	names := make(map[string]string, len(repos))
	for _, rp := range repos {
		names[rp.ID] = rp.Name
	}
	return names, repos, nil
}

// pagePolicies lists the policies.
func (s *Server) pagePolicies(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	if s.policies == nil {
		s.pageError(w, r, errNoPolicies)
		return
	}
	names, _, err := s.repoNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	var rows []policyRow
	for _, pol := range s.policies.List() {
		rows = append(rows, s.policyRowOf(pol, names))
	}
	d := map[string]any{"User": p, "Policies": rows}
	// After a deletion the script lands here with how many hosts changed.
	if n, err := strconv.Atoi(r.URL.Query().Get("deleted")); err == nil && n >= 0 {
		d["Deleted"] = "Policy deleted; the schedules of " + plural(n, "host") + " changed."
	}
	s.render(w, "policies.html", d)
}

// policyPageData is a policy's page, or the new-policy page.
type policyPageData struct {
	User   auth.Principal
	New    bool
	Policy policyRow
	// SchedJSON is the policy's schedules for the editor (a data- attribute).
	SchedJSON string
	Repos     []repoOption
	// Changed says how many hosts' schedules the save the page follows
	// changed.
	Changed string
	// History is the policy's audit entries, newest first.
	History []storage.AuditEntry
	// Missing: the names the policy uses that some matching hosts lack;
	// KnownHooks and KnownSources: every name some host reports (the
	// editor's suggestions).
	Missing                  []hooks.Missing
	KnownHooks, KnownSources []string
}

// historyShown is how many changes a policy's page lists; the rest are in
// GET /api/v1/audit?target=/api/v1/policies/{id}.
const historyShown = 20

type repoOption struct{ ID, Name string }

func (s *Server) policyPage(w http.ResponseWriter, r *http.Request, d policyPageData, sched []schedules.Schedule) {
	_, repos, err := s.repoNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	for _, rp := range repos {
		d.Repos = append(d.Repos, repoOption{ID: rp.ID, Name: rp.Name})
	}
	if sched == nil {
		sched = []schedules.Schedule{}
	}
	d.KnownHooks, d.KnownSources = s.policies.KnownNames()
	b, _ := json.Marshal(sched)
	d.SchedJSON = string(b)
	if n, err := strconv.Atoi(r.URL.Query().Get("changed")); err == nil && n >= 0 {
		d.Changed = "Saved; the schedules of " + plural(n, "host") + " changed."
	}
	s.render(w, "policy.html", d)
}

// pagePolicy shows a policy (read-only but for admins, who get the editor).
func (s *Server) pagePolicy(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	if s.policies == nil {
		s.pageError(w, r, errNoPolicies)
		return
	}
	pol, err := s.policies.Get(chi.URLParam(r, "id"))
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	names, _, err := s.repoNames()
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	hist, _, err := s.store.ListAudit(storage.AuditQuery{Target: policy.Target(pol.ID), Limit: historyShown})
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.policyPage(w, r, policyPageData{User: p, Policy: s.policyRowOf(pol, names), History: hist, Missing: s.policies.Missing(pol)}, pol.Schedules)
}

// pagePolicyNew is the editor for a new policy (admins).
func (s *Server) pagePolicyNew(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	if !p.Can(auth.RoleAdmin) {
		s.pageError(w, r, errForbiddenPage)
		return
	}
	if s.policies == nil {
		s.pageError(w, r, errNoPolicies)
		return
	}
	s.policyPage(w, r, policyPageData{User: p, New: true}, nil)
}
