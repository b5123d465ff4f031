// Package hooks checks the hook and source names that jobs, schedules and
// policies ask for against the names hosts report. The commands behind a
// name live only in each agent's own configuration (a console that could
// send commands would make one stolen admin session root on every
// endpoint); the console only picks names, and refuses a name the host
// never reported before anything is sent, with the names it does have.
//
// A schedule's fire that names a name its host lacks (a policy matched a
// host before its agent had the hook, or the agent's configuration lost
// it) is not sent for the agent to fail: the fleet records it as a failed
// job with the same message. The operator then sees, at once, even while
// the host is offline, in the job history and in a job_failed alert,
// which name is missing and which names the host has; an agent would
// only say that it lacks the name, and only once it is back online.
//
// It is a leaf the fleet may import: it depends on no other part of the
// console but console/input.
package hooks

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"

	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Kinds of name, as the API shows them.
const (
	KindHook   = "hook"
	KindSource = "source"
)

// Check refuses a job of kind with (normalized) args that names a hook or
// source h has not reported, or restores into a source without a restore
// command there. The error is an input error whose message names what is
// missing and what the host has.
func Check(h storage.Host, kind string, args json.RawMessage) error {
	switch kind {
	case wire.JobBackup:
		var a wire.BackupArgs
		if err := json.Unmarshal(args, &a); err != nil {
			return fmt.Errorf("backup args: %w", err)
		}
		return checkNames(h, a.Hooks, a.Sources)
	case wire.JobRestore:
		var a wire.RestoreArgs
		if err := json.Unmarshal(args, &a); err != nil {
			return fmt.Errorf("restore args: %w", err)
		}
		if a.ToSource != "" && !slices.Contains(h.RestoreSources, a.ToSource) {
			return input.Errorf("host %s has no source %q with a restore command (it reports: %s)",
				hostName(h), a.ToSource, list(h.RestoreSources))
		}
	case wire.JobDrill:
		// h is the host that runs the drill: its agent runs the probe.
		var a wire.DrillArgs
		if err := json.Unmarshal(args, &a); err != nil {
			return fmt.Errorf("drill args: %w", err)
		}
		return checkProbe(h, a.Probe)
	}
	return nil
}

func checkProbe(h storage.Host, probe string) error {
	if probe != "" && !slices.Contains(h.Hooks, probe) {
		return input.Errorf("host %s has no hook %q to probe a drill with (it reports: %s); hooks are defined in the agent's own configuration",
			hostName(h), probe, list(h.Hooks))
	}
	return nil
}

// CheckSchedule refuses a host's own schedule naming a hook or source the
// host has not reported.
func CheckSchedule(h storage.Host, s schedules.Schedule) error {
	var err error
	switch s.Kind {
	case wire.JobBackup:
		err = checkNames(h, s.Hooks, s.Sources)
	case wire.JobDrill:
		err = checkProbe(h, s.Probe)
	}
	if err != nil {
		return input.Errorf("schedule %q: %s", s.Name, err.Error())
	}
	return nil
}

func checkNames(h storage.Host, hooks, sources []string) error {
	var msgs []string
	if m := lacking(hooks, h.Hooks); len(m) > 0 {
		msgs = append(msgs, fmt.Sprintf("host %s has no %s %s (it reports: %s)", hostName(h), plural(KindHook, len(m)), quoted(m), list(h.Hooks)))
	}
	if m := lacking(sources, h.Sources); len(m) > 0 {
		msgs = append(msgs, fmt.Sprintf("host %s has no %s %s (it reports: %s)", hostName(h), plural(KindSource, len(m)), quoted(m), list(h.Sources)))
	}
	if len(msgs) == 0 {
		return nil
	}
	return input.Errorf("%s; hooks and sources are defined in the agent's own configuration", strings.Join(msgs, "; "))
}

// Missing is a name a policy asks for and how many of its hosts lack it.
type Missing struct {
	Name  string `json:"name"`
	Kind  string `json:"kind"` // KindHook or KindSource
	Hosts int    `json:"hosts"`
	// HostIDs are the first MaxMissingIDs of them.
	HostIDs []string `json:"host_ids"`
}

// MaxMissingIDs bounds Missing.HostIDs: the count says how many more.
const MaxMissingIDs = 20

// MissingOn reports, for each hook and source the schedules name, the
// hosts that lack it (only names some host lacks), in the order named.
func MissingOn(hosts []storage.Host, scheds []schedules.Schedule) []Missing {
	out := []Missing{}
	seen := map[string]bool{}
	add := func(kind, name string, has func(storage.Host) []string) {
		if seen[kind+"/"+name] {
			return
		}
		seen[kind+"/"+name] = true
		m := Missing{Name: name, Kind: kind, HostIDs: []string{}}
		for _, h := range hosts {
			if !slices.Contains(has(h), name) {
				m.Hosts++
				if len(m.HostIDs) < MaxMissingIDs {
					m.HostIDs = append(m.HostIDs, h.ID)
				}
			}
		}
		if m.Hosts > 0 {
			out = append(out, m)
		}
	}
	for _, s := range scheds {
		if s.Kind != wire.JobBackup {
			continue
		}
		for _, n := range s.Hooks {
			add(KindHook, n, func(h storage.Host) []string { return h.Hooks })
		}
		for _, n := range s.Sources {
			add(KindSource, n, func(h storage.Host) []string { return h.Sources })
		}
	}
	return out
}

// Known is every hook and every source name any of the hosts reports,
// sorted: the suggestions of the policy editor.
func Known(hosts []storage.Host) (hookNames, sourceNames []string) {
	hs, ss := map[string]bool{}, map[string]bool{}
	for _, h := range hosts {
		for _, n := range h.Hooks {
			hs[n] = true
		}
		for _, n := range h.Sources {
			ss[n] = true
		}
	}
	return sortedKeys(hs), sortedKeys(ss)
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// lacking is the names of want not in have, in want's order.
func lacking(want, have []string) []string {
	var out []string
	for _, n := range want {
		if !slices.Contains(have, n) {
			out = append(out, n)
		}
	}
	return out
}

func hostName(h storage.Host) string {
	if h.Name != "" {
		return h.Name
	}
	return h.ID
}

func plural(what string, n int) string {
	if n == 1 {
		return what
	}
	return what + "s"
}

func quoted(names []string) string {
	q := make([]string, len(names))
	for i, n := range names {
		q[i] = fmt.Sprintf("%q", n)
	}
	return strings.Join(q, ", ")
}

func list(names []string) string {
	if len(names) == 0 {
		return "none"
	}
	return strings.Join(names, ", ")
}
