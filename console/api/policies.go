package api

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/hooks"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/console/policy"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// policyView is a policy with how many hosts it matches now.
type policyView struct {
	ID           string               `json:"id"`
	Name         string               `json:"name"`
	Selector     map[string]string    `json:"selector"`
	RepoID       string               `json:"repo_id,omitempty"`
	RepoTemplate *templateView        `json:"repo_template,omitempty"`
	Schedules    []schedules.Schedule `json:"schedules"`
	RPO          string               `json:"rpo,omitempty"`
	ForgetGuard  *guardView           `json:"forget_guard,omitempty"`
	// Drill is the restore drill cadence of the policy's hosts.
	Drill *storage.PolicyDrill `json:"drill,omitempty"`
	// CopyToRepoID: a copy follows each backup (console/copies);
	// CopyLagMax the copy_lag alert's threshold.
	CopyToRepoID string    `json:"copy_to_repo_id,omitempty"`
	CopyLagMax   int       `json:"copy_lag_max,omitempty"`
	Hosts        int       `json:"hosts"`
	CreatedAt    time.Time `json:"created_at"`
	UpdatedAt    time.Time `json:"updated_at"`
	// Missing: each hook and source the schedules name that some matching
	// hosts' agents do not report (their fires make failed jobs).
	Missing []hooks.Missing `json:"missing"`
	// Changed is how many hosts' schedules the last change rolled out to.
	Changed *int `json:"changed,omitempty"`
}

// templateView is a repository template without its environment's values.
type templateView struct {
	URL    string `json:"url"`
	Init   bool   `json:"init"`
	HasEnv bool   `json:"has_env"`
}

type guardView struct {
	MaxRemovePercent int `json:"max_remove_percent"`
}

func (s *Server) viewPolicy(p storage.Policy) policyView {
	v := policyView{ID: p.ID, Name: p.Name, Selector: p.Selector, RepoID: p.RepoID, Schedules: p.Schedules,
		Drill: p.Drill, CopyToRepoID: p.CopyToRepoID, CopyLagMax: p.CopyLagMax, Hosts: s.policies.MatchCount(p.Selector), Missing: s.policies.Missing(p), CreatedAt: p.CreatedAt, UpdatedAt: p.UpdatedAt}
	if v.Schedules == nil {
		v.Schedules = []schedules.Schedule{}
	}
	if t := p.RepoTemplate; t != nil {
		v.RepoTemplate = &templateView{URL: t.URL, Init: t.Init, HasEnv: len(t.SealedEnv) > 0}
	}
	if p.RPO > 0 {
		v.RPO = p.RPO.String()
	}
	if p.ForgetGuardPercent > 0 {
		v.ForgetGuard = &guardView{MaxRemovePercent: p.ForgetGuardPercent}
	}
	return v
}

func (s *Server) listPolicies(w http.ResponseWriter, r *http.Request) {
	out := []policyView{}
	for _, p := range s.policies.List() {
		out = append(out, s.viewPolicy(p))
	}
	httpx.WriteJSON(w, http.StatusOK, out)
}

func (s *Server) getPolicy(w http.ResponseWriter, r *http.Request) {
	p, err := s.policies.Get(chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	httpx.WriteJSON(w, http.StatusOK, s.viewPolicy(p))
}

func (s *Server) createPolicy(w http.ResponseWriter, r *http.Request) {
	var req policy.Request
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	p, n, err := s.policies.Create(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	auth.NoteAudit(r.Context(), policy.Target(p.ID), policy.Describe(p, n))
	v := s.viewPolicy(p)
	v.Changed = &n
	httpx.WriteJSON(w, http.StatusCreated, v)
}

func (s *Server) putPolicy(w http.ResponseWriter, r *http.Request) {
	var req policy.Request
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	// The policy before the edit, for the audit entry's account of it
	// (changes are one at a time in the policy service; one landing between
	// this read and the update would show in its own entry).
	old, _ := s.policies.Get(chi.URLParam(r, "id"))
	p, n, err := s.policies.Update(r.Context(), chi.URLParam(r, "id"), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	auth.NoteAudit(r.Context(), "", policy.Diff(old, p, n))
	v := s.viewPolicy(p)
	v.Changed = &n
	httpx.WriteJSON(w, http.StatusOK, v)
}

func (s *Server) deletePolicy(w http.ResponseWriter, r *http.Request) {
	old, _ := s.policies.Get(chi.URLParam(r, "id"))
	n, err := s.policies.Delete(r.Context(), chi.URLParam(r, "id"))
	if err != nil {
		s.fail(w, r, err)
		return
	}
	auth.NoteAudit(r.Context(), "", policy.Deleted(old, n))
	httpx.WriteJSON(w, http.StatusOK, map[string]int{"changed": n})
}

// previewPolicy counts the hosts a selector ("role=web,env=prod") matches:
// the editor's live "matches N hosts".
func (s *Server) previewPolicy(w http.ResponseWriter, r *http.Request) {
	sel, err := wire.ParseLabels(r.URL.Query().Get("selector"))
	if err != nil {
		s.fail(w, r, input.Errorf("selector: %s", err))
		return
	}
	httpx.WriteJSON(w, http.StatusOK, map[string]int{"hosts": s.policies.MatchCount(sel)})
}
