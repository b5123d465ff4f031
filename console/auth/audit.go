package auth

import (
	"context"
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
		note := &auditNote{}
		r = r.WithContext(context.WithValue(r.Context(), auditNoteKey{}, note))
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
		target := r.URL.Path
		if note.target != "" {
			target = note.target
		}
		a.Record(storage.AuditEntry{Actor: p.User, Kind: kind, Action: r.Method + " " + pattern,
			Target: target, Remote: r.RemoteAddr, Status: ww.Status(), Detail: note.detail})
	})
}

type auditNoteKey struct{}

// auditNote is what a handler adds to its request's audit entry.
type auditNote struct{ target, detail string }

// NoteAudit lets a handler say what its request did, in the audit entry
// the Audit middleware writes for it: the object it made (a POST's path
// names only the collection; target "" keeps the path) and, in words, what
// changed. Outside Audit it does nothing.
func NoteAudit(ctx context.Context, target, detail string) {
	if n, ok := ctx.Value(auditNoteKey{}).(*auditNote); ok {
		if target != "" {
			n.target = target
		}
		n.detail = detail
	}
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
