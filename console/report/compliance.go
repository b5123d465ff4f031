// Package report computes reports over the fleet for people who answer for
// it (auditors, managers): one job so far, RPO compliance.
//
// A policy may set an RPO: the age past which a host's last good backup is
// a breach. The compliance report has one row per (policy with an RPO, host
// it matches): a host under two such policies appears twice. A host is
// within a policy's RPO while its last good backup (succeeded or partial:
// a snapshot exists) is at most the RPO old; a host that has never backed
// up is given one RPO from when it came under the policy (the later of the
// host's and the policy's creation) for its first. The breach starts at
// that deadline. The fleet's host state (fleet.Assess, through HostRPO)
// uses the same deadlines, so the report, the rpo_breach alert, the
// dashboard and the metrics agree.
//
// Only enrolled hosts are judged (a host waiting for its agent, or revoked,
// has nothing to back up with), as fleet.Assess does.
package report

import (
	"context"
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/console/policy"
	"github.com/restic-manager/restic-manager/storage"
)

// Compliance is the RPO compliance report.
type Compliance struct {
	GeneratedAt time.Time `json:"generated_at"`
	// PolicyID is the policy the report was asked for ("" for all).
	PolicyID string `json:"policy_id,omitempty"`
	Totals   Totals `json:"totals"`
	Rows     []Row  `json:"rows"`
}

// Totals count hosts, not rows: a host under several policies with an RPO
// counts once, within only when it is within every one of them.
type Totals struct {
	// Hosts under an RPO (of the policy asked for, or of any), within it
	// and in breach.
	Hosts    int `json:"hosts"`
	Within   int `json:"within"`
	Breached int `json:"breached"`
	// NoRPO counts the enrolled hosts that no policy with an RPO matches
	// (the whole fleet's, whatever policy was asked for): not in the rows.
	NoRPO int `json:"no_rpo"`
}

// Row is one host under one policy.
type Row struct {
	PolicyID   string `json:"policy_id"`
	PolicyName string `json:"policy_name"`
	HostID     string `json:"host_id"`
	HostName   string `json:"host_name"`
	// LastSuccessAt is when the last good backup ended (null: never);
	// AgeS its age in seconds when the report was made.
	LastSuccessAt *time.Time `json:"last_success_at"`
	AgeS          *int64     `json:"age_s"`
	// RPO as the policy API shows it ("26h0m0s"), and in seconds.
	RPO       string `json:"rpo"`
	RPOS      int64  `json:"rpo_s"`
	WithinRPO bool   `json:"within_rpo"`
	// BreachedSince is when the breach began (null while within): the last
	// good backup's end plus the RPO, or for a host never backed up, when
	// it came under the policy plus the RPO.
	BreachedSince *time.Time `json:"breached_since"`
	// LastDrillAt is when the host's last restore drill ended and DrillOK
	// whether it succeeded (both null: never drilled). CopyLag is what of
	// the host's snapshots is missing in its policy's copy destination
	// (null: the policy copies nowhere, or the lag is not measured yet).
	LastDrillAt *time.Time `json:"last_drill_at"`
	DrillOK     *bool      `json:"drill_ok"`
	CopyLag     *CopyLag   `json:"copy_lag"`
}

// CopyLag is how far the host's second copy lags (CONTRACT.md's repository
// copy_lag, for the host's own snapshots: console/copies measures it).
type CopyLag struct {
	ToRepoID         string     `json:"to_repo_id"`
	MissingSnapshots int        `json:"missing_snapshots"`
	OldestMissingAt  *time.Time `json:"oldest_missing_at"`
}

// due is when host h breaches policy p (p.RPO > 0): its last good backup's
// end plus the RPO, or, never backed up, the later of the host's and the
// policy's creation plus the RPO.
func due(p storage.Policy, h storage.Host) time.Time {
	if h.LastSuccess != nil {
		return h.LastSuccess.EndedAt.Add(p.RPO)
	}
	matched := h.CreatedAt
	if p.CreatedAt.After(matched) {
		matched = p.CreatedAt
	}
	return matched.Add(p.RPO)
}

// HostRPO is what the policies with an RPO that match h require of it
// (fleet.RPOFunc): the smallest RPO, and when h breaches if it has never
// backed up (the earliest of its policies' deadlines). ok is false when no
// policy with an RPO matches h.
func HostRPO(policies []storage.Policy, h storage.Host) (rpo time.Duration, firstDue time.Time, ok bool) {
	for _, p := range policies {
		if p.RPO <= 0 || !policy.Matches(p.Selector, h.Labels) {
			continue
		}
		d := due(p, h)
		if !ok || p.RPO < rpo {
			rpo = p.RPO
		}
		if !ok || d.Before(firstDue) {
			firstDue = d
		}
		ok = true
	}
	return rpo, firstDue, ok
}

// Reporter makes the reports from the store's hosts and the policies.
type Reporter struct {
	store    *storage.Store
	hosts    *storage.HostCache
	policies func() []storage.Policy
}

// New makes reports over st's hosts and the policies that policies
// returns (console/policy's List).
func New(st *storage.Store, policies func() []storage.Policy) *Reporter {
	return &Reporter{store: st, hosts: st.NewHostCache(), policies: policies}
}

// Compliance is the report at now, for one policy or (policyID "") all.
// Every host is read as the store holds it now; only the records written
// since the last report are decoded again.
func (r *Reporter) Compliance(ctx context.Context, policyID string, now time.Time) (Compliance, error) {
	if err := ctx.Err(); err != nil {
		return Compliance{}, err
	}
	hosts, err := r.hosts.Hosts()
	if err != nil {
		return Compliance{}, err
	}
	pols := r.policies()
	c, err := Build(hosts, pols, policyID, now, true)
	if err != nil {
		return c, err
	}
	r.fillCopyLag(c.Rows, hosts, pols)
	return c, nil
}

// fillCopyLag gives each row of a policy that copies the host's lag in
// the copy destination, from the source repository's health.
func (r *Reporter) fillCopyLag(rows []Row, hosts []storage.Host, pols []storage.Policy) {
	byID := map[string]storage.Policy{}
	for _, p := range pols {
		if p.CopyToRepoID != "" {
			byID[p.ID] = p
		}
	}
	if len(byID) == 0 {
		return
	}
	hostByID := map[string]storage.Host{}
	for _, h := range hosts {
		hostByID[h.ID] = h
	}
	repos := map[string]*storage.Repo{}
	repo := func(id string) *storage.Repo {
		if rp, seen := repos[id]; seen {
			return rp
		}
		rp, err := r.store.GetRepo(id)
		if err != nil {
			repos[id] = nil
			return nil
		}
		repos[id] = &rp
		return &rp
	}
	for i := range rows {
		p, ok := byID[rows[i].PolicyID]
		if !ok {
			continue
		}
		h := hostByID[rows[i].HostID]
		src := p.RepoID
		if p.RepoTemplate != nil {
			pr, err := r.store.GetPolicyRepo(p.ID, h.ID)
			if err != nil {
				continue
			}
			src = pr.RepoID
		}
		rp := repo(src)
		if rp == nil || rp.Health == nil {
			continue
		}
		for _, l := range rp.Health.CopyLag {
			if l.ToRepoID != p.CopyToRepoID {
				continue
			}
			cl := &CopyLag{ToRepoID: l.ToRepoID, MissingSnapshots: l.ByHost[h.Hostname]}
			if t, ok := l.OldestByHost[h.Hostname]; ok {
				cl.OldestMissingAt = &t
			}
			rows[i].CopyLag = cl
		}
	}
}

// Totals are the fleet's totals at now (as Compliance's, without rows);
// ok is false when no policy sets an RPO (nothing to show).
func (r *Reporter) Totals(ctx context.Context, now time.Time) (t Totals, ok bool, err error) {
	pols := r.policies()
	if !slices.ContainsFunc(pols, func(p storage.Policy) bool { return p.RPO > 0 }) {
		return Totals{}, false, nil
	}
	if err := ctx.Err(); err != nil {
		return t, false, err
	}
	hosts, err := r.hosts.Hosts()
	if err != nil {
		return t, false, err
	}
	c, err := Build(hosts, pols, "", now, false)
	return c.Totals, err == nil, err
}

// HostRPO is fleet.RPOFunc over the current policies.
func (r *Reporter) HostRPO(h storage.Host) (time.Duration, time.Time, bool) {
	return HostRPO(r.policies(), h)
}

// Build computes the report at now over hosts (the enrolled ones), for the
// policies with an RPO (only policyID's when it is not empty; a policy
// that does not exist is storage.ErrNotFound), with its rows when withRows.
// Rows are ordered by policy name, then host name.
func Build(hosts []storage.Host, policies []storage.Policy, policyID string, now time.Time, withRows bool) (Compliance, error) {
	c := Compliance{GeneratedAt: now.UTC(), PolicyID: policyID, Rows: []Row{}}
	var all, asked []storage.Policy // with an RPO; those of the report
	found := policyID == ""
	for _, p := range policies {
		if p.ID == policyID {
			found = true
		}
		if p.RPO <= 0 {
			continue
		}
		all = append(all, p)
		if policyID == "" || p.ID == policyID {
			asked = append(asked, p)
		}
	}
	if !found {
		return c, fmt.Errorf("policy %s: %w", policyID, storage.ErrNotFound)
	}
	slices.SortFunc(asked, func(a, b storage.Policy) int {
		return cmp2(a.Name, b.Name, a.ID, b.ID)
	})
	byPolicy := make([][]Row, len(asked))
	for _, h := range hosts {
		if !h.Enrolled {
			continue
		}
		under, within := false, true
		for i, p := range asked {
			if !policy.Matches(p.Selector, h.Labels) {
				continue
			}
			ok := !now.After(due(p, h))
			if withRows {
				byPolicy[i] = append(byPolicy[i], row(p, h, now))
			}
			under, within = true, within && ok
		}
		switch {
		case under:
			c.Totals.Hosts++
			if within {
				c.Totals.Within++
			} else {
				c.Totals.Breached++
			}
		case !underAny(all, h):
			c.Totals.NoRPO++
		}
	}
	for _, rows := range byPolicy {
		slices.SortFunc(rows, func(a, b Row) int { return cmp2(a.HostName, b.HostName, a.HostID, b.HostID) })
		c.Rows = append(c.Rows, rows...)
	}
	return c, nil
}

// row judges host h against policy p at now.
func row(p storage.Policy, h storage.Host, now time.Time) Row {
	r := Row{PolicyID: p.ID, PolicyName: p.Name, HostID: h.ID, HostName: h.Name,
		RPO: p.RPO.String(), RPOS: int64(p.RPO / time.Second)}
	if s := h.LastSuccess; s != nil {
		at := s.EndedAt.UTC()
		age := int64(now.Sub(at) / time.Second)
		r.LastSuccessAt, r.AgeS = &at, &age
	}
	if dr := h.LastDrill; dr != nil {
		at, ok := dr.EndedAt.UTC(), dr.OK()
		r.LastDrillAt, r.DrillOK = &at, &ok
	}
	d := due(p, h).UTC()
	r.WithinRPO = !now.After(d)
	if !r.WithinRPO {
		r.BreachedSince = &d
	}
	return r
}

func underAny(policies []storage.Policy, h storage.Host) bool {
	for _, p := range policies {
		if policy.Matches(p.Selector, h.Labels) {
			return true
		}
	}
	return false
}

func cmp2(a1, b1, a2, b2 string) int {
	if c := strings.Compare(a1, b1); c != 0 {
		return c
	}
	return strings.Compare(a2, b2)
}

// CSVHeader is the CSV report's first line, the JSON rows' field names.
var CSVHeader = []string{"policy_id", "policy_name", "host_id", "host_name", "last_success_at", "age_s",
	"rpo", "rpo_s", "within_rpo", "breached_since", "last_drill_at", "drill_ok", "copy_lag"}

// WriteCSV writes the rows as CSV (RFC 4180, quoted where needed): a
// header line, then one line per row; a null is an empty cell, times are
// RFC 3339 in UTC. Names that a spreadsheet would take for a formula (they
// begin with =, +, -, @, a tab or a carriage return; a host may name
// itself at enrolment) are prefixed with a single quote.
func (c Compliance) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	if err := cw.Write(CSVHeader); err != nil {
		return err
	}
	rec := make([]string, len(CSVHeader))
	for _, r := range c.Rows {
		rec = append(rec[:0], r.PolicyID, inert(r.PolicyName), r.HostID, inert(r.HostName),
			stamp(r.LastSuccessAt), num(r.AgeS), r.RPO, strconv.FormatInt(r.RPOS, 10),
			strconv.FormatBool(r.WithinRPO), stamp(r.BreachedSince), stamp(r.LastDrillAt), "", "")
		if r.DrillOK != nil {
			rec[11] = strconv.FormatBool(*r.DrillOK)
		}
		if r.CopyLag != nil {
			rec[12] = strconv.Itoa(r.CopyLag.MissingSnapshots)
		}
		if err := cw.Write(rec); err != nil {
			return err
		}
	}
	cw.Flush()
	return cw.Error()
}

func stamp(t *time.Time) string {
	if t == nil {
		return ""
	}
	return t.UTC().Format(time.RFC3339)
}

func num(n *int64) string {
	if n == nil {
		return ""
	}
	return strconv.FormatInt(*n, 10)
}

// inert keeps a spreadsheet from running a cell as a formula (OWASP's CSV
// injection advice).
func inert(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}
