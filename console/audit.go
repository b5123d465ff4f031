package console

import (
	"net/http"
	"strconv"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/restic-manager/restic-manager/storage"
)

// audit records every state-changing request of an authenticated principal:
// who, what (method and route), on what (path), from where, and the answer.
func (c *Console) audit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if safeMethod(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		p, _ := principalFrom(r.Context())
		kind := "user"
		if !p.Session {
			kind = "token"
		}
		pattern := r.URL.Path
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			pattern = rc.RoutePattern()
		}
		c.record(storage.AuditEntry{Actor: p.User, Kind: kind, Action: r.Method + " " + pattern,
			Target: r.URL.Path, Remote: r.RemoteAddr, Status: ww.Status()})
	})
}

// record appends to the audit log; a failure is logged, never fatal to the
// action itself.
func (c *Console) record(e storage.AuditEntry) {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	if err := c.store.AppendAudit(e); err != nil {
		c.log.Error("audit entry lost", "action", e.Action, "actor", e.Actor, "error", err)
	}
}

func (c *Console) apiAudit(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	limit, _ := strconv.Atoi(q.Get("limit"))
	entries, next, err := c.store.ListAudit(storage.AuditQuery{Actor: q.Get("actor"), Limit: limit, Cursor: q.Get("cursor")})
	if err != nil {
		c.fail(w, r, err)
		return
	}
	if next != "" {
		w.Header().Set("X-Next-Cursor", next)
	}
	writeJSON(w, http.StatusOK, entries)
}
