package runner

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"time"
)

// defaultMaxRemovePercent is the guard's threshold when none is given.
const defaultMaxRemovePercent = 50

// ForgetHeld is Result.Output of a forget the guard held: the preview's
// groups (what would have been kept and removed) and why it stopped.
type ForgetHeld struct {
	Groups []ForgetGroup `json:"groups"`
	// Total and Remove count the snapshots in scope and those the forget
	// would remove; Future lists the snapshots dated after NotAfter.
	Total  int      `json:"total"`
	Remove int      `json:"remove"`
	Future []string `json:"future,omitempty"`
	Reason string   `json:"reason"`
}

// runAll runs a guarded forget as a preview (--dry-run, no prune) and, if
// the guard lets it, the forget itself, both under the one repository lock.
// An unguarded forget is one run.
func (o opForget) runAll(ctx context.Context, r *Runner, spec *Spec, v resticVersion, argv []string, h Hooks, sec *redactor, log *slog.Logger, res Result) Result {
	g := spec.Forget.Guard
	if g == nil || spec.Forget.DryRun {
		return r.execute(ctx, spec, o, v, argv, h, sec, log, res)
	}
	plan := *spec
	plan.Forget.DryRun, plan.Forget.Prune, plan.Forget.Guard = true, false, nil
	pargv, err := o.argv(&plan, v)
	if err != nil {
		return failed(res, err.Error())
	}
	pres := r.execute(ctx, &plan, o, v, pargv, Hooks{OnStart: h.OnStart}, sec, log, res)
	if pres.Status != StatusSucceeded {
		pres.Error = "the forget's preview failed, nothing was deleted: " + pres.Error
		return pres
	}
	var out ForgetOutput
	if err := json.Unmarshal(pres.Output, &out); err != nil {
		return failed(pres, "cannot read the forget's preview: "+err.Error())
	}
	if held := judge(out.Groups, g); held != nil {
		log.Warn("forget held by its guard", "reason", held.Reason, "total", held.Total, "remove", held.Remove, "future", len(held.Future))
		pres.Status, pres.Error, pres.Output = StatusHeld, held.Reason, mustJSON(held)
		return pres
	}
	return r.execute(ctx, spec, o, v, argv, Hooks{OnProgress: h.OnProgress}, sec, log, res)
}

// judge applies the guard to a preview: nil when the forget may go on.
func judge(groups []ForgetGroup, g *ForgetGuard) *ForgetHeld {
	max := g.MaxRemovePercent
	if max <= 0 {
		max = defaultMaxRemovePercent
	}
	h := &ForgetHeld{Groups: groups}
	for _, gr := range groups {
		h.Total += len(gr.Keep) + len(gr.Remove)
		h.Remove += len(gr.Remove)
		for id, ts := range gr.Times {
			t, err := time.Parse(time.RFC3339Nano, ts)
			if err == nil && !g.NotAfter.IsZero() && t.After(g.NotAfter) {
				h.Future = append(h.Future, id)
			}
		}
	}
	switch {
	case len(h.Future) > 0:
		h.Reason = fmt.Sprintf("held: %d snapshot(s) are dated after %s (forged, or a host's clock is wrong), and a retention policy would keep them instead of the real ones; nothing was deleted — an admin approves or cancels", len(h.Future), g.NotAfter.UTC().Format(time.RFC3339))
	case h.Total > 0 && h.Remove*100 > max*h.Total:
		h.Reason = fmt.Sprintf("held: the forget would remove %d of %d snapshots (%d%%), more than the guard's %d%%; nothing was deleted — an admin approves or cancels", h.Remove, h.Total, h.Remove*100/h.Total, max)
	default:
		return nil
	}
	return h
}
