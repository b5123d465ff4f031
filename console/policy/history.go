package policy

import (
	"encoding/json"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/runner"
	"github.com/restic-manager/restic-manager/storage"
)

// Target is the audit target of a policy: every change to it is recorded
// under this path, and its history is the audit entries with it.
func Target(id string) string { return "/api/v1/policies/" + id }

// Describe says in words what a new policy is, for its audit entry. No
// secret is in it: a template's environment is named "set", never shown.
func Describe(pol storage.Policy, hosts int) string {
	parts := []string{"selector " + selectorText(pol.Selector), "repository " + repoText(pol), schedulesText(pol)}
	if pol.RPO > 0 {
		parts = append(parts, "RPO "+durText(pol.RPO))
	}
	if pol.ForgetGuardPercent > 0 {
		parts = append(parts, fmt.Sprintf("forget guard %d%%", pol.ForgetGuardPercent))
	}
	return "created: " + strings.Join(parts, "; ") + "; schedules of " + hostsText(hosts) + " changed"
}

// Diff says in words what an edit changed, for its audit entry.
func Diff(old, pol storage.Policy, hosts int) string {
	var parts []string
	if old.Name != pol.Name {
		parts = append(parts, fmt.Sprintf("name %q → %q", old.Name, pol.Name))
	}
	if a, b := selectorText(old.Selector), selectorText(pol.Selector); a != b {
		parts = append(parts, "selector "+a+" → "+b)
	}
	if a, b := repoText(old), repoText(pol); a != b {
		parts = append(parts, "repository "+a+" → "+b)
	} else if old.RepoTemplate != nil && pol.RepoTemplate != nil && pol.RepoTemplate.Env != nil {
		parts = append(parts, "template environment replaced")
	}
	if a, b := schedulesText(old), schedulesText(pol); a != b || !sameSchedules(old, pol) {
		parts = append(parts, "schedules: "+a+" → "+b)
	}
	if old.RPO != pol.RPO {
		parts = append(parts, "RPO "+durText(old.RPO)+" → "+durText(pol.RPO))
	}
	if old.ForgetGuardPercent != pol.ForgetGuardPercent {
		parts = append(parts, "forget guard "+guardText(old.ForgetGuardPercent)+" → "+guardText(pol.ForgetGuardPercent))
	}
	if len(parts) == 0 {
		parts = append(parts, "nothing")
	}
	return "changed: " + strings.Join(parts, "; ") + "; schedules of " + hostsText(hosts) + " changed"
}

// Deleted is the audit detail of a policy's deletion.
func Deleted(pol storage.Policy, hosts int) string {
	return fmt.Sprintf("deleted %q (selector %s); its schedules removed from %s", pol.Name, selectorText(pol.Selector), hostsText(hosts))
}

func selectorText(sel map[string]string) string {
	if len(sel) == 0 {
		return "(every host)"
	}
	keys := make([]string, 0, len(sel))
	for k := range sel {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for i, k := range keys {
		keys[i] = k + "=" + sel[k]
	}
	return strings.Join(keys, ",")
}

func repoText(pol storage.Policy) string {
	if t := pol.RepoTemplate; t != nil {
		// Without user information: a rest-server URL may carry a password.
		s := "per host " + runner.RedactURL(t.URL)
		if t.Init {
			s += " (init)"
		}
		return s
	}
	return pol.RepoID
}

func schedulesText(pol storage.Policy) string {
	if len(pol.Schedules) == 0 {
		return "none"
	}
	var out []string
	for _, sc := range pol.Schedules {
		s := sc.Kind + " " + sc.Cron
		if sc.Name != "" {
			s = sc.Name + " (" + s + ")"
		}
		if !sc.Enabled {
			s += " disabled"
		}
		out = append(out, s)
	}
	return strings.Join(out, ", ")
}

// sameSchedules compares what the words above leave out (paths, tags,
// retention): an edit of those is still named.
func sameSchedules(a, b storage.Policy) bool {
	ja, _ := json.Marshal(a.Schedules)
	jb, _ := json.Marshal(b.Schedules)
	return string(ja) == string(jb)
}

func durText(d time.Duration) string {
	if d == 0 {
		return "none"
	}
	// 26h, not Go's 26h0m0s.
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

func guardText(p int) string {
	if p == 0 {
		return "default"
	}
	return fmt.Sprintf("%d%%", p)
}

func hostsText(n int) string {
	if n == 1 {
		return "1 host"
	}
	return fmt.Sprintf("%d hosts", n)
}
