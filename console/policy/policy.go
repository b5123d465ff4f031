// Package policy manages the fleet by policy: a policy is a named template
// (a label selector, schedules, the repository they use, an RPO, a forget
// guard) that applies to every host whose labels match. A host's schedules
// are its own plus those of every matching policy; editing a policy, a
// host's labels or deleting a policy recomputes the affected hosts in one
// batched pass (fleet.ApplyPolicySchedules). Policies bind their hosts to
// their repository. Policies bind repositories, so changing them is an
// admin's action.
package policy

import (
	"context"
	"fmt"
	"log/slog"
	"maps"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/console/repos"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Options configure Policies.
type Options struct {
	Fleet  *fleet.Fleet
	Repos  *repos.Repos
	Logger *slog.Logger
}

// Policies keeps the policies (in memory too: every job's binding check
// and every host change reads them) and applies them.
type Policies struct {
	f     *fleet.Fleet
	repos *repos.Repos
	store *storage.Store
	log   *slog.Logger
	// hosts is what finds the hosts a selector matches: a walk of 10,000
	// host records decodes each (about 0.6 s of CPU measured in the fleet
	// simulator's policy edit); the cache decodes only those written since.
	hosts *storage.HostCache

	// mu guards byID and orders changes: one policy change at a time is
	// computed and applied, so two edits cannot interleave their rollouts.
	mu   sync.RWMutex
	byID map[string]storage.Policy
	// apply serialises rollouts (a change, or a host's relabelling).
	apply sync.Mutex
}

// New loads the policies and hooks them into the fleet: they bind their
// hosts to their repository, and a host's changed labels re-apply them.
func New(opts Options) (*Policies, error) {
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	p := &Policies{f: opts.Fleet, repos: opts.Repos, store: opts.Fleet.Store(), log: opts.Logger.With("component", "policy"), byID: map[string]storage.Policy{}}
	p.hosts = p.store.NewHostCache()
	list, err := p.store.ListPolicies()
	if err != nil {
		return nil, err
	}
	for _, pol := range list {
		p.byID[pol.ID] = pol
	}
	opts.Fleet.SetPolicyBinder(p.binds)
	opts.Fleet.SetForgetGuard(p.guardFor)
	opts.Fleet.OnHostChanged(func(h storage.Host) {
		if _, err := p.applyTo(context.Background(), []string{h.ID}); err != nil {
			p.log.Error("policies not applied to a changed host", "host_id", h.ID, "error", err)
		}
	})
	return p, nil
}

// Request is a policy to create or replace.
type Request struct {
	Name     string            `json:"name"`
	Selector map[string]string `json:"selector"`
	RepoID   string            `json:"repo_id"`
	// RepoTemplate, instead of RepoID, makes a repository per host.
	RepoTemplate *TemplateRequest     `json:"repo_template"`
	Schedules    []schedules.Schedule `json:"schedules"`
	// RPO: the age past which a host's last good backup breaches the
	// policy ("26h"; empty: none).
	RPO         string `json:"rpo"`
	ForgetGuard *struct {
		MaxRemovePercent int `json:"max_remove_percent"`
	} `json:"forget_guard"`
	// Drill sets the hosts' restore drill cadence: one drill schedule per
	// host beside the schedules (a drill in Schedules works too).
	Drill *storage.PolicyDrill `json:"drill"`
	// CopyToRepoID: a copy of the host's snapshots follows each
	// successful backup; copy schedules without to_repo_id use it.
	// CopyLagMax: the copy_lag alert's threshold (missing snapshots).
	CopyToRepoID string `json:"copy_to_repo_id"`
	CopyLagMax   int    `json:"copy_lag_max"`
}

// Matches reports whether a host with these labels falls under selector:
// every key=value of the selector is among its labels (an empty selector
// matches every host).
func Matches(selector, labels map[string]string) bool {
	for k, v := range selector {
		if got, ok := labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// List returns the policies, ordered by name.
func (p *Policies) List() []storage.Policy {
	p.mu.RLock()
	out := slices.Collect(maps.Values(p.byID))
	p.mu.RUnlock()
	slices.SortFunc(out, func(a, b storage.Policy) int { return strings.Compare(a.Name+a.ID, b.Name+b.ID) })
	return out
}

// Get returns one policy.
func (p *Policies) Get(id string) (storage.Policy, error) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	pol, ok := p.byID[id]
	if !ok {
		return pol, fmt.Errorf("policy %s: %w", id, storage.ErrNotFound)
	}
	return pol, nil
}

// Create stores a policy and applies it to the hosts it matches; it
// returns the policy and how many hosts' schedules changed.
func (p *Policies) Create(ctx context.Context, req Request) (storage.Policy, int, error) {
	pol, err := p.build(req, storage.Policy{ID: token.NewID("pol"), CreatedAt: time.Now().UTC()})
	if err != nil {
		return pol, 0, err
	}
	return p.put(ctx, pol, nil)
}

// Update replaces a policy and re-applies it to the hosts it matched and
// those it matches now.
func (p *Policies) Update(ctx context.Context, id string, req Request) (storage.Policy, int, error) {
	old, err := p.Get(id)
	if err != nil {
		return old, 0, err
	}
	pol, err := p.build(req, old)
	if err != nil {
		return pol, 0, err
	}
	return p.put(ctx, pol, old.Selector)
}

// Delete removes a policy: its schedules leave every host it matched.
func (p *Policies) Delete(ctx context.Context, id string) (int, error) {
	p.apply.Lock()
	defer p.apply.Unlock()
	old, err := p.Get(id)
	if err != nil {
		return 0, err
	}
	if err := p.store.DeletePolicy(id); err != nil {
		return 0, err
	}
	p.mu.Lock()
	delete(p.byID, id)
	p.mu.Unlock()
	p.log.Info("policy deleted", "policy_id", id, "name", old.Name)
	hosts, err := p.matching(old.Selector)
	if err != nil {
		return 0, err
	}
	return p.applyLocked(ctx, hosts)
}

// MatchCount is how many hosts a selector matches now (the editor's
// preview).
func (p *Policies) MatchCount(selector map[string]string) int {
	ids, err := p.matching(selector)
	if err != nil {
		p.log.Error("hosts not read", "error", err)
	}
	return len(ids)
}

// put stores pol and applies the change to the hosts of its old selector
// (nil for a new policy) and its new one.
func (p *Policies) put(ctx context.Context, pol storage.Policy, oldSelector map[string]string) (storage.Policy, int, error) {
	p.apply.Lock()
	defer p.apply.Unlock()
	if err := p.store.PutPolicy(pol); err != nil {
		return pol, 0, err
	}
	// As stored: a template's environment sealed, not kept in the clear.
	pol, err := p.store.GetPolicy(pol.ID)
	if err != nil {
		return pol, 0, err
	}
	p.mu.Lock()
	p.byID[pol.ID] = pol
	p.mu.Unlock()
	// One walk of the fleet: the hosts it matches now, and those it
	// matched before (whose schedules it must take back).
	all, err := p.hosts.Hosts()
	if err != nil {
		return pol, 0, err
	}
	var hosts []string
	for _, h := range all {
		if Matches(pol.Selector, h.Labels) || oldSelector != nil && Matches(oldSelector, h.Labels) {
			hosts = append(hosts, h.ID)
		}
	}
	start := time.Now()
	n, err := p.applyLocked(ctx, hosts)
	p.log.Info("policy applied", "policy_id", pol.ID, "name", pol.Name, "hosts", len(hosts), "changed", n, "took", time.Since(start).Round(time.Millisecond))
	return pol, n, err
}

// build validates a request into a policy (base holds its ID and
// creation; its schedules keep their IDs where the request names them).
func (p *Policies) build(req Request, base storage.Policy) (storage.Policy, error) {
	pol := base
	pol.Name = strings.TrimSpace(req.Name)
	if pol.Name == "" || len(pol.Name) > 200 {
		return pol, input.Errorf("name is required (at most 200 characters)")
	}
	if err := wire.ValidateLabels(req.Selector); err != nil {
		return pol, input.Errorf("selector: %s", err)
	}
	pol.Selector = maps.Clone(req.Selector)
	if pol.Selector == nil {
		pol.Selector = map[string]string{}
	}
	pol.RepoID, pol.RepoTemplate = "", nil
	switch {
	case (req.RepoID == "") == (req.RepoTemplate == nil):
		return pol, input.Errorf("give exactly one of repo_id and repo_template")
	case req.RepoTemplate != nil:
		t, err := checkTemplate(req.RepoTemplate)
		if err != nil {
			return pol, err
		}
		// An edit that does not repeat the environment (which is never
		// shown) keeps it.
		if req.RepoTemplate.Env == nil && base.RepoTemplate != nil {
			t.SealedEnv = base.RepoTemplate.SealedEnv
		}
		// Likewise the URL: an edit that sends back the URL as shown
		// (its password redacted) keeps the stored one.
		if b := base.RepoTemplate; b != nil && t.SecretURL == b.URL && len(b.SealedURL) > 0 {
			t.SecretURL, t.SealedURL = "", b.SealedURL
		}
		pol.RepoTemplate = t
	default:
		if _, err := p.store.GetRepo(req.RepoID); err != nil {
			return pol, input.Errorf("repository %q does not exist", req.RepoID)
		}
		pol.RepoID = req.RepoID
	}
	known := map[string]bool{}
	for _, s := range base.Schedules {
		known[s.ID] = true
	}
	pol.Schedules = make([]schedules.Schedule, len(req.Schedules))
	for i, s := range req.Schedules {
		switch {
		case s.ID == "":
			s.ID = token.NewID("psch")
		case !known[s.ID]:
			return pol, input.Errorf("schedule %q: unknown id %q (omit the id to create a schedule)", s.Name, s.ID)
		}
		s.RepoID, s.PolicyID = pol.RepoID, pol.ID
		if s.Kind == wire.JobCopy && (s.ToRepoID == "" || s.ToRepoID == base.CopyToRepoID) {
			s.ToRepoID = req.CopyToRepoID // the policy's destination, and follows it
		}
		if s.Kind == wire.JobCopy {
			if err := p.checkCopyDest(pol, s.ToRepoID); err != nil {
				return pol, input.Errorf("schedule %q: %v", s.Name, err)
			}
		}
		pol.Schedules[i] = s
	}
	pol.Drill = nil
	if d := req.Drill; d != nil && d.Cron != "" {
		dc := *d
		pol.Drill = &dc
	}
	// (A template's repositories do not exist yet: validate with a stand-in.)
	check := slices.Clone(pol.Schedules)
	if pol.Drill != nil {
		check = append(check, drillSchedule(pol))
	}
	for i := range check {
		if check[i].RepoID == "" {
			check[i].RepoID = "repo-template"
		}
	}
	if err := schedules.ValidateSet(check); err != nil {
		return pol, input.Errorf("%v", err)
	}
	pol.RPO = 0
	if req.RPO != "" {
		d, err := time.ParseDuration(req.RPO)
		if err != nil || d <= 0 {
			return pol, input.Errorf("rpo must be a duration such as \"26h\"")
		}
		pol.RPO = d
	}
	pol.ForgetGuardPercent = 0
	if g := req.ForgetGuard; g != nil {
		if g.MaxRemovePercent < 1 || g.MaxRemovePercent > 100 {
			return pol, input.Errorf("forget_guard.max_remove_percent must be 1-100")
		}
		pol.ForgetGuardPercent = g.MaxRemovePercent
	}
	pol.CopyToRepoID, pol.CopyLagMax = "", 0
	if req.CopyToRepoID != "" {
		if err := p.checkCopyDest(pol, req.CopyToRepoID); err != nil {
			return pol, input.Errorf("copy_to_repo_id: %v", err)
		}
		pol.CopyToRepoID = req.CopyToRepoID
	}
	if req.CopyLagMax < 0 {
		return pol, input.Errorf("copy_lag_max must not be negative")
	}
	pol.CopyLagMax = req.CopyLagMax
	pol.UpdatedAt = time.Now().UTC()
	return pol, nil
}

// checkCopyDest: a copy destination exists and is not the policy's own
// repository.
func (p *Policies) checkCopyDest(pol storage.Policy, to string) error {
	if to == "" {
		return fmt.Errorf("a copy needs to_repo_id (or the policy's copy_to_repo_id)")
	}
	if to == pol.RepoID {
		return fmt.Errorf("the copy destination must be another repository than the policy's")
	}
	if _, err := p.store.GetRepo(to); err != nil {
		return fmt.Errorf("repository %q does not exist", to)
	}
	return nil
}

// CopyDest is the copy that follows a backup of h into repoID: the
// policy (the first in ID order) matching h whose repository on h is
// repoID and which copies elsewhere; ok is false when there is none.
func (p *Policies) CopyDest(h storage.Host, repoID string) (pol storage.Policy, ok bool) {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, id := range slices.Sorted(maps.Keys(p.byID)) {
		pol := p.byID[id]
		if pol.CopyToRepoID != "" && Matches(pol.Selector, h.Labels) && p.repoFor(pol, h) == repoID {
			return pol, true
		}
	}
	return storage.Policy{}, false
}

// CopyLagMax is the copy_lag threshold for copies into dest: the
// smallest copy_lag_max of the policies copying there (0: none).
func (p *Policies) CopyLagMax(dest string) int {
	p.mu.RLock()
	defer p.mu.RUnlock()
	m := 0
	for _, pol := range p.byID {
		if pol.CopyToRepoID == dest && pol.CopyLagMax > 0 && (m == 0 || pol.CopyLagMax < m) {
			m = pol.CopyLagMax
		}
	}
	return m
}

// CopyDestsOf lists the destinations the policies using repoID (as
// their repository, not a template's) copy it to.
func (p *Policies) CopyDestsOf(repoID string) []string {
	p.mu.RLock()
	defer p.mu.RUnlock()
	var out []string
	for _, pol := range p.byID {
		if pol.RepoID == repoID && pol.CopyToRepoID != "" && !slices.Contains(out, pol.CopyToRepoID) {
			out = append(out, pol.CopyToRepoID)
		}
	}
	slices.Sort(out)
	return out
}

// matching lists the hosts whose labels a selector matches.
func (p *Policies) matching(selector map[string]string) ([]string, error) {
	all, err := p.hosts.Hosts()
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, h := range all {
		if Matches(selector, h.Labels) {
			ids = append(ids, h.ID)
		}
	}
	return ids, nil
}

// applyTo recomputes the policy schedules of some hosts.
func (p *Policies) applyTo(ctx context.Context, hostIDs []string) (int, error) {
	p.apply.Lock()
	defer p.apply.Unlock()
	return p.applyLocked(ctx, hostIDs)
}

func (p *Policies) applyLocked(ctx context.Context, hostIDs []string) (int, error) {
	// First the repositories template policies make for their hosts.
	p.mu.RLock()
	var templated []storage.Policy
	for _, pol := range p.byID {
		if pol.RepoTemplate != nil {
			templated = append(templated, pol)
		}
	}
	p.mu.RUnlock()
	if len(templated) > 0 {
		for _, id := range hostIDs {
			h, err := p.store.GetHost(id)
			if err != nil {
				continue
			}
			for _, pol := range templated {
				if Matches(pol.Selector, h.Labels) {
					if _, err := p.ensureRepo(pol, h); err != nil {
						p.log.Error("policy repository not made", "policy_id", pol.ID, "host_id", h.ID, "error", err)
					}
				}
			}
		}
	}
	return p.f.ApplyPolicySchedules(ctx, hostIDs, p.schedulesFor)
}

// schedulesFor is the set of schedules h's matching policies give it, in
// policy ID order. Two policies that both match both apply: their
// schedules run side by side, each marked with its policy.
func (p *Policies) schedulesFor(h storage.Host) []schedules.Schedule {
	p.mu.RLock()
	defer p.mu.RUnlock()
	ids := slices.Sorted(maps.Keys(p.byID))
	var out []schedules.Schedule
	for _, id := range ids {
		pol := p.byID[id]
		if !Matches(pol.Selector, h.Labels) {
			continue
		}
		repo := p.repoFor(pol, h)
		if repo == "" {
			continue // its repository could not be made: nothing to run
		}
		for _, s := range pol.Schedules {
			s.RepoID = repo
			out = append(out, s)
		}
		if pol.Drill != nil {
			s := drillSchedule(pol)
			s.RepoID = repo
			out = append(out, s)
		}
	}
	return out
}

// drillSchedule is the drill schedule a policy's drill cadence gives each
// of its hosts. Its ID is the policy's, so that an edit of the cadence
// changes the schedule rather than replacing it (the fire history stays).
func drillSchedule(pol storage.Policy) schedules.Schedule {
	d := pol.Drill
	return schedules.Schedule{ID: "pdrill-" + pol.ID, Name: "restore drill (" + pol.Name + ")", Kind: wire.JobDrill,
		Cron: d.Cron, Timezone: d.Timezone, JitterS: d.JitterS, Enabled: true, RepoID: pol.RepoID, PolicyID: pol.ID,
		SampleFiles: d.SampleFiles, SampleBytes: d.SampleBytes}
}

// binds reports whether a policy matching h uses the repository.
func (p *Policies) binds(h storage.Host, repoID string) bool {
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, pol := range p.byID {
		if !Matches(pol.Selector, h.Labels) {
			continue
		}
		if pol.CopyToRepoID == repoID || p.repoFor(pol, h) == repoID {
			return true // its copies write the destination too
		}
		for _, s := range pol.Schedules {
			if s.Kind == wire.JobCopy && s.ToRepoID == repoID {
				return true
			}
		}
	}
	return false
}

// UsingRepo lists the policies that use a repository.
func (p *Policies) UsingRepo(repoID string) []storage.Policy {
	var out []storage.Policy
	for _, pol := range p.List() {
		if pol.RepoID == repoID || pol.CopyToRepoID == repoID {
			out = append(out, pol)
		}
	}
	return out
}

// guardFor is the forget guard threshold of the policy whose schedule made
// job j (0: the console's default).
func (p *Policies) guardFor(j storage.Job) int {
	if j.ScheduleID == "" {
		return 0
	}
	p.mu.RLock()
	defer p.mu.RUnlock()
	for _, pol := range p.byID {
		for _, s := range pol.Schedules {
			if s.ID == j.ScheduleID {
				return pol.ForgetGuardPercent
			}
		}
	}
	return 0
}
