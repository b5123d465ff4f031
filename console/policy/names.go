package policy

import (
	"github.com/restic-manager/restic-manager/console/hooks"
	"github.com/restic-manager/restic-manager/storage"
)

// Missing is, for each hook and source pol's schedules name, the matching
// hosts whose agents do not report it. A policy may name what no host has
// yet (hosts enrol later); its fires on such a host make failed jobs, so
// the policy's page warns of them here first.
func (p *Policies) Missing(pol storage.Policy) []hooks.Missing {
	all, err := p.hosts.Hosts()
	if err != nil {
		p.log.Error("hosts not read", "error", err)
		return []hooks.Missing{}
	}
	var matched []storage.Host
	for _, h := range all {
		if Matches(pol.Selector, h.Labels) {
			matched = append(matched, h)
		}
	}
	return hooks.MissingOn(matched, pol.Schedules)
}

// KnownNames is every hook and source name some host reports: the policy
// editor's suggestions.
func (p *Policies) KnownNames() (hookNames, sourceNames []string) {
	all, err := p.hosts.Hosts()
	if err != nil {
		p.log.Error("hosts not read", "error", err)
	}
	return hooks.Known(all)
}
