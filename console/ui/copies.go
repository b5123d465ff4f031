package ui

import (
	"encoding/json"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// jobCopy is the job page's report of a copy: where to, and (once it
// ended) what restic copied and what it found already there.
type jobCopy struct {
	ToRepoID, ToRepoName string
	Done                 bool
	Copied               []string
	Skipped              int
}

func (s *Server) jobCopyOf(j storage.Job) *jobCopy {
	if j.Kind != wire.JobCopy {
		return nil
	}
	c := &jobCopy{ToRepoID: fleet.CopyDest(j.Kind, j.Args), Done: !j.EndedAt.IsZero()}
	c.ToRepoName = c.ToRepoID
	if rp, err := s.store.GetRepo(c.ToRepoID); err == nil {
		c.ToRepoName = rp.Name
	}
	var out wire.CopyOutput
	if len(j.Output) > 0 && json.Unmarshal(j.Output, &out) == nil {
		c.Copied, c.Skipped = out.Copied, out.Skipped
	}
	return c
}
