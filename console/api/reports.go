package api

import (
	"net/http"
	"time"

	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/console/input"
)

// complianceReport answers GET /reports/compliance?policy_id=&format=:
// per policy with an RPO and host it matches, whether the host's last good
// backup is within the RPO (console/report), as JSON (the default) or as a
// CSV download.
func (s *Server) complianceReport(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	format := q.Get("format")
	if format != "" && format != "json" && format != "csv" {
		s.fail(w, r, input.Errorf("format must be json or csv"))
		return
	}
	c, err := s.opts.Reports.Compliance(r.Context(), q.Get("policy_id"), time.Now())
	if err != nil {
		s.fail(w, r, err)
		return
	}
	if format != "csv" {
		httpx.WriteJSON(w, http.StatusOK, c)
		return
	}
	name := "compliance-" + c.GeneratedAt.Format("20060102-150405")
	if c.PolicyID != "" {
		name += "-" + c.PolicyID // an ID: letters, digits and dashes
	}
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="`+name+`.csv"`)
	w.Header().Set("Cache-Control", "no-store")
	if err := c.WriteCSV(w); err != nil {
		s.log.Warn("compliance report not sent", "error", err)
	}
}
