package agent

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/wire"
)

// runHealth runs the parts of a health job one after another and merges
// their outputs. A failed part is named in Errors; the job fails only when
// every part failed.
func (a *Agent) runHealth(ctx context.Context, spec runner.Spec, pump *progressPump) runner.Result {
	start := time.Now()
	pump.started(start)
	var out wire.HealthOutput
	parts := []struct {
		name string
		spec runner.Spec
		dst  *json.RawMessage
	}{
		{"snapshots", runner.Spec{Kind: runner.KindSnapshots}, &out.Snapshots},
		{"stats raw-data", runner.Spec{Kind: runner.KindStats, Stats: runner.StatsArgs{Mode: "raw-data"}}, &out.RawData},
		{"stats restore-size", runner.Spec{Kind: runner.KindStats, Stats: runner.StatsArgs{Mode: "restore-size"}}, &out.RestoreSize},
		{"locks", runner.Spec{Kind: runner.KindLocks}, &out.Locks},
	}
	ok := 0
	var last runner.Result
	for _, p := range parts {
		p.spec.Repo, p.spec.Timeout = spec.Repo, spec.Timeout
		last = a.runner.Run(ctx, p.spec, runner.Hooks{})
		if last.Status == runner.StatusCancelled {
			last.StartedAt = start
			return last
		}
		if last.Status != runner.StatusSucceeded {
			out.Errors = append(out.Errors, fmt.Sprintf("%s: %s", p.name, last.Error))
			continue
		}
		*p.dst = last.Output
		ok++
	}
	b, _ := json.Marshal(out)
	res := runner.Result{Status: runner.StatusSucceeded, ExitCode: 0, StartedAt: start, EndedAt: time.Now(), Output: b}
	switch {
	case ok == 0:
		res.Status, res.ExitCode, res.Error, res.StderrTail = runner.StatusFailed, last.ExitCode, last.Error, last.StderrTail
	case ok < len(parts):
		res.Status = runner.StatusPartial
		res.Error = fmt.Sprintf("%d of %d health probes failed", len(parts)-ok, len(parts))
	}
	return res
}
