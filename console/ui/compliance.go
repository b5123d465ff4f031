package ui

import (
	"context"
	"strconv"
	"time"

	"github.com/restic-manager/restic-manager/console/report"
)

// ComplianceTotals reads the fleet's RPO totals at now; ok is false when
// no policy sets an RPO (report.Reporter.Totals).
type ComplianceTotals func(ctx context.Context, now time.Time) (t report.Totals, ok bool, err error)

// complianceView is the dashboard's line of RPO totals ("1,984 of 2,000
// hosts within RPO"), linking to the report.
type complianceView struct {
	Within, Hosts, Breached string
	AnyBreached             bool
}

// complianceTotals is the dashboard's view of the totals, nil when there
// is nothing to show (no policy sets an RPO, or they could not be read:
// logged, the rest of the dashboard still shows).
func (s *Server) complianceTotals(ctx context.Context, now time.Time) *complianceView {
	if s.compliance == nil {
		return nil
	}
	t, ok, err := s.compliance(ctx, now)
	if err != nil {
		s.log.Warn("compliance totals not read", "error", err)
		return nil
	}
	if !ok {
		return nil
	}
	return &complianceView{Within: thousands(t.Within), Hosts: thousands(t.Hosts), Breached: thousands(t.Breached), AnyBreached: t.Breached > 0}
}

// thousands writes n with a comma between groups of three digits.
func thousands(n int) string {
	s := strconv.Itoa(n)
	neg := n < 0
	if neg {
		s = s[1:]
	}
	out := make([]byte, 0, len(s)+len(s)/3+1)
	if neg {
		out = append(out, '-')
	}
	for i := range len(s) {
		if i > 0 && (len(s)-i)%3 == 0 {
			out = append(out, ',')
		}
		out = append(out, s[i])
	}
	return string(out)
}
