package report

import (
	"bytes"
	"encoding/csv"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

var t0 = time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)

func host(id string, labels map[string]string, created time.Time, lastSuccess time.Duration) storage.Host {
	h := storage.Host{ID: id, Name: id, Enrolled: true, CreatedAt: created, Labels: labels}
	if lastSuccess > 0 {
		h.LastSuccess = &storage.LastBackup{JobID: "job-" + id, Status: storage.JobSucceeded, EndedAt: t0.Add(-lastSuccess)}
	}
	return h
}

func fixture() ([]storage.Host, []storage.Policy) {
	old := t0.Add(-60 * 24 * time.Hour)
	policies := []storage.Policy{
		{ID: "pol-web", Name: "web", Selector: map[string]string{"role": "web"}, RPO: 26 * time.Hour, CreatedAt: old},
		{ID: "pol-prod", Name: "prod", Selector: map[string]string{"env": "prod"}, RPO: 6 * time.Hour, CreatedAt: old},
		{ID: "pol-new", Name: "new", Selector: map[string]string{"role": "new"}, RPO: 24 * time.Hour, CreatedAt: t0.Add(-time.Hour)},
		{ID: "pol-none", Name: "no rpo", Selector: map[string]string{}},
	}
	notEnrolled := host("host-pending", map[string]string{"role": "web"}, old, 0)
	notEnrolled.Enrolled = false
	hosts := []storage.Host{
		host("host-w1", map[string]string{"role": "web"}, old, 2*time.Hour),                 // within web
		host("host-w2", map[string]string{"role": "web", "env": "prod"}, old, 10*time.Hour), // within web, breaches prod
		host("host-w3", map[string]string{"role": "web"}, old, 30*time.Hour),                // breaches web
		host("host-w4", map[string]string{"role": "web"}, old, 0),                           // never: due 60 days ago + 26h
		host("host-w5", map[string]string{"role": "web"}, t0.Add(-2*time.Hour), 0),          // never, new host: due in 24h
		host("host-n1", map[string]string{"role": "new"}, old, 0),                           // never, new policy: due in 23h
		host("host-x", map[string]string{"role": "db"}, old, time.Hour),                     // no RPO
		notEnrolled,
	}
	return hosts, policies
}

// Every (policy with an RPO, enrolled host it matches) is a row, ordered by
// policy then host name; within means the last good backup is at most the
// RPO old; a breach began at its end plus the RPO, or for a host never
// backed up, at the later of its and the policy's creation plus the RPO.
// Totals count hosts (within only when within every policy).
func TestComplianceRowsAndTotals(t *testing.T) {
	hosts, policies := fixture()
	c, err := Build(hosts, policies, "", t0, true)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, r := range c.Rows {
		s := fmt.Sprintf("%s/%s within=%v", r.PolicyName, r.HostID, r.WithinRPO)
		if r.BreachedSince != nil {
			s += " since=" + r.BreachedSince.Format(time.RFC3339)
		}
		got = append(got, s)
	}
	want := []string{
		"new/host-n1 within=true",
		"prod/host-w2 within=false since=" + t0.Add(-10*time.Hour+6*time.Hour).Format(time.RFC3339),
		"web/host-w1 within=true",
		"web/host-w2 within=true",
		"web/host-w3 within=false since=" + t0.Add(-30*time.Hour+26*time.Hour).Format(time.RFC3339),
		"web/host-w4 within=false since=" + t0.Add(-60*24*time.Hour+26*time.Hour).Format(time.RFC3339),
		"web/host-w5 within=true",
	}
	if !slices.Equal(got, want) {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// 6 hosts under an RPO: w1, w5, n1 within; w2 (prod), w3, w4 breached;
	// host-x under none; the pending host is not judged.
	if want := (Totals{Hosts: 6, Within: 3, Breached: 3, NoRPO: 1}); c.Totals != want {
		t.Errorf("totals %+v, want %+v", c.Totals, want)
	}
	r := c.Rows[4] // web/host-w3
	if r.LastSuccessAt == nil || !r.LastSuccessAt.Equal(t0.Add(-30*time.Hour)) || r.AgeS == nil || *r.AgeS != 30*3600 ||
		r.RPO != "26h0m0s" || r.RPOS != 26*3600 || r.LastDrillAt != nil || r.DrillOK != nil || r.CopyLag != nil {
		t.Errorf("row %+v", r)
	}
	if r := c.Rows[5]; r.LastSuccessAt != nil || r.AgeS != nil {
		t.Errorf("never backed up: %+v", r)
	}

	// One policy: its rows, totals over its hosts; no_rpo stays the fleet's.
	c, err = Build(hosts, policies, "pol-prod", t0, true)
	if err != nil || len(c.Rows) != 1 || c.Rows[0].HostID != "host-w2" || c.Totals != (Totals{Hosts: 1, Breached: 1, NoRPO: 1}) {
		t.Errorf("pol-prod: %+v %v", c, err)
	}
	// A policy without an RPO has no rows; an unknown one is not found.
	if c, err := Build(hosts, policies, "pol-none", t0, true); err != nil || len(c.Rows) != 0 || c.Totals.Hosts != 0 {
		t.Errorf("pol-none: %+v %v", c, err)
	}
	if _, err := Build(hosts, policies, "pol-gone", t0, true); !errors.Is(err, storage.ErrNotFound) {
		t.Errorf("unknown policy: %v", err)
	}
}

// A host ages past its RPO: within up to the RPO itself, breached from the
// next instant, since its last backup's end plus the RPO.
func TestComplianceEdgeOfTheRPO(t *testing.T) {
	_, policies := fixture()
	h := host("host-w1", map[string]string{"role": "web"}, t0.Add(-90*24*time.Hour), 26*time.Hour)
	c, _ := Build([]storage.Host{h}, policies[:1], "", t0, true)
	if !c.Rows[0].WithinRPO {
		t.Errorf("exactly the RPO old: %+v", c.Rows[0])
	}
	c, _ = Build([]storage.Host{h}, policies[:1], "", t0.Add(time.Second), true)
	if r := c.Rows[0]; r.WithinRPO || r.BreachedSince == nil || !r.BreachedSince.Equal(t0) {
		t.Errorf("a second past the RPO: %+v", r)
	}
}

// HostRPO, what the fleet judges a host's state by, agrees with the rows:
// the smallest RPO of its policies, and a never backed up host's first
// deadline.
func TestHostRPO(t *testing.T) {
	hosts, policies := fixture()
	byID := map[string]storage.Host{}
	for _, h := range hosts {
		byID[h.ID] = h
	}
	if rpo, _, ok := HostRPO(policies, byID["host-w2"]); !ok || rpo != 6*time.Hour {
		t.Errorf("web+prod host: %s %v, want 6h", rpo, ok)
	}
	if _, due, ok := HostRPO(policies, byID["host-n1"]); !ok || !due.Equal(t0.Add(-time.Hour+24*time.Hour)) {
		t.Errorf("never backed up under a new policy: due %s", due)
	}
	if _, _, ok := HostRPO(policies, byID["host-x"]); ok {
		t.Error("a host under no RPO has one")
	}
	// A host breaches (now past its RPO or first deadline) exactly when a
	// row of it is breached.
	c, _ := Build(hosts, policies, "", t0, true)
	breached := map[string]bool{}
	for _, r := range c.Rows {
		breached[r.HostID] = breached[r.HostID] || !r.WithinRPO
	}
	for _, h := range hosts {
		rpo, due, ok := HostRPO(policies, h)
		if !ok || !h.Enrolled {
			continue
		}
		if h.LastSuccess != nil {
			due = h.LastSuccess.EndedAt.Add(rpo)
		}
		if t0.After(due) != breached[h.ID] {
			t.Errorf("%s: HostRPO breach %v, report %v", h.ID, t0.After(due), breached[h.ID])
		}
	}
}

// The CSV is RFC 4180 (a name with a comma, quotes or a line break comes
// back whole), has the JSON's field names as header, empty cells for nulls,
// and a name a spreadsheet would run as a formula made inert.
func TestComplianceCSV(t *testing.T) {
	hosts, policies := fixture()
	hosts[0].Name = "web, \"eu\"\nrack 2"
	hosts[2].Name = "=HYPERLINK(\"http://evil\")"
	hosts[2].LastDrill = &storage.LastDrill{JobID: "job-d", Status: storage.JobFailed, EndedAt: t0.Add(-3 * time.Hour)}
	hosts[4].LastDrill = &storage.LastDrill{JobID: "job-e", Status: storage.JobSucceeded, EndedAt: t0.Add(-5 * time.Hour)}
	c, _ := Build(hosts, policies, "pol-web", t0, true)
	var buf bytes.Buffer
	if err := c.WriteCSV(&buf); err != nil {
		t.Fatal(err)
	}
	recs, err := csv.NewReader(&buf).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1+len(c.Rows) || !slices.Equal(recs[0], CSVHeader) {
		t.Fatalf("csv: %q", recs)
	}
	col := map[string]int{}
	for i, name := range recs[0] {
		col[name] = i
	}
	byHost := map[string][]string{}
	for _, r := range recs[1:] {
		byHost[r[col["host_id"]]] = r
	}
	if r := byHost["host-w1"]; r[col["host_name"]] != hosts[0].Name || r[col["within_rpo"]] != "true" ||
		r[col["last_success_at"]] != t0.Add(-2*time.Hour).Format(time.RFC3339) || r[col["breached_since"]] != "" ||
		r[col["last_drill_at"]] != "" || r[col["drill_ok"]] != "" || r[col["copy_lag"]] != "" || r[col["rpo"]] != "26h0m0s" {
		t.Errorf("host-w1: %q", r)
	}
	if r := byHost["host-w3"]; r[col["host_name"]] != "'"+hosts[2].Name || r[col["within_rpo"]] != "false" ||
		r[col["breached_since"]] != t0.Add(-4*time.Hour).Format(time.RFC3339) ||
		r[col["last_drill_at"]] != t0.Add(-3*time.Hour).Format(time.RFC3339) || r[col["drill_ok"]] != "false" {
		t.Errorf("host-w3: %q", r)
	}
	if r := byHost[hosts[4].ID]; r[col["last_drill_at"]] != t0.Add(-5*time.Hour).Format(time.RFC3339) || r[col["drill_ok"]] != "true" {
		t.Errorf("%s: %q", hosts[4].ID, r)
	}
	if r := byHost["host-w4"]; r[col["last_success_at"]] != "" || r[col["age_s"]] != "" {
		t.Errorf("host-w4: %q", r)
	}
}
