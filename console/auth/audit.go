package auth

import (
	"net/http"
	"time"

	"github.com/go-chi/chi/v5"
	"github.com/go-chi/chi/v5/middleware"

	"github.com/restic-manager/restic-manager/storage"
)

// audit records every state-changing request of an authenticated principal:
// who, what (method and route), on what (path), from where, and the answer.
func (a *Auth) Audit(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if safeMethod(r.Method) {
			next.ServeHTTP(w, r)
			return
		}
		ww := middleware.NewWrapResponseWriter(w, r.ProtoMajor)
		next.ServeHTTP(ww, r)
		p, _ := From(r.Context())
		kind := "user"
		if !p.Session {
			kind = "token"
		}
		pattern := r.URL.Path
		if rc := chi.RouteContext(r.Context()); rc != nil && rc.RoutePattern() != "" {
			pattern = rc.RoutePattern()
		}
		a.Record(storage.AuditEntry{Actor: p.User, Kind: kind, Action: r.Method + " " + pattern,
			Target: r.URL.Path, Remote: r.RemoteAddr, Status: ww.Status()})
	})
}

// record appends to the audit log; a failure is logged, never fatal to the
// action itself.
func (a *Auth) Record(e storage.AuditEntry) {
	if e.At.IsZero() {
		e.At = time.Now().UTC()
	}
	if err := a.store.AppendAudit(e); err != nil {
		a.log.Error("audit entry lost", "action", e.Action, "actor", e.Actor, "error", err)
	}
}
