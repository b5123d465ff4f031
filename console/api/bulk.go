package api

import (
	"context"
	"net/http"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/policy"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// bulkRequest is one job for many hosts: those a label selector matches
// (as a policy's selector does) or a list of host IDs, exactly one of the
// two.
type bulkRequest struct {
	Selector map[string]string `json:"selector"`
	HostIDs  []string          `json:"host_ids"`
	jobRequest
}

type bulkRefusal struct {
	HostID string `json:"host_id"`
	Error  string `json:"error"`
}

// createBulkJobs makes a job on every host of the selection (see
// fleet.CreateJobs): 201 with the jobs made and the hosts refused, each
// with its reason; 400, and no job at all, for an invalid request.
func (s *Server) createBulkJobs(w http.ResponseWriter, r *http.Request) {
	var req bulkRequest
	if err := httpx.Decode(r, &req); err != nil {
		s.fail(w, r, err)
		return
	}
	hosts, err := s.bulkTargets(r.Context(), req)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	res, err := s.fleet.CreateJobs(fleet.JobRequest{RepoID: req.RepoID, Kind: req.Kind, Args: req.Args,
		ActorKind: "user", Actor: who(r).User, TimeoutS: req.TimeoutS}, hosts)
	if err != nil {
		s.fail(w, r, err)
		return
	}
	refused := make([]bulkRefusal, len(res.Refused))
	for i, x := range res.Refused {
		refused[i] = bulkRefusal{HostID: x.HostID, Error: x.Error}
	}
	code := http.StatusCreated
	if len(res.JobIDs) == 0 {
		code = http.StatusOK // every host refused: nothing was made
	}
	httpx.WriteJSON(w, code, map[string]any{"job_ids": res.JobIDs, "refused": refused})
}

// bulkTargets resolves a bulk request's hosts: its list as given, or every
// host its selector matches, in ID order.
func (s *Server) bulkTargets(ctx context.Context, req bulkRequest) ([]string, error) {
	switch {
	case req.Selector != nil && req.HostIDs != nil:
		return nil, fleet.Invalid("give either a selector or host_ids, not both")
	case req.HostIDs != nil:
		return req.HostIDs, nil
	case req.Selector == nil:
		return nil, fleet.Invalid("give a selector ({\"role\": \"web\"}) or host_ids")
	case len(req.Selector) == 0:
		return nil, fleet.Invalid("selector: name at least one label (an empty selector would match every host)")
	}
	if err := wire.ValidateLabels(req.Selector); err != nil {
		return nil, fleet.Invalid("selector: %s", err)
	}
	var hosts []string
	s.fleet.EachHost(ctx, func(h storage.Host) {
		if policy.Matches(req.Selector, h.Labels) {
			hosts = append(hosts, h.ID)
		}
	})
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if len(hosts) == 0 {
		return nil, fleet.Invalid("no host matches the selector %s", wire.FormatLabels(req.Selector))
	}
	return hosts, nil
}
