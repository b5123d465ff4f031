// Package httpx holds the few HTTP helpers every part of the console's web
// side shares: JSON answers and errors, strict request decoding, the
// security headers and the rate-limit key.
package httpx

import (
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"

	"github.com/go-chi/httprate"

	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/storage"
)

// MaxBody bounds every request body the API reads.
const MaxBody = 1 << 20

// WriteJSON answers with v as JSON, never cached.
func WriteJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(v)
}

// WriteError answers {"error": msg}.
func WriteError(w http.ResponseWriter, code int, msg string) {
	WriteJSON(w, code, map[string]string{"error": msg})
}

// Fail maps an error to its answer: the caller's input 400 (with the
// message alone), unknown 404, taken 409, anything else 500 (logged, never
// shown).
func Fail(log *slog.Logger, w http.ResponseWriter, r *http.Request, err error) {
	if msg, ok := input.As(err); ok {
		WriteError(w, http.StatusBadRequest, msg)
		return
	}
	if msg, ok := input.AsConflict(err); ok {
		WriteError(w, http.StatusConflict, msg)
		return
	}
	switch {
	case errors.Is(err, storage.ErrInvalid):
		WriteError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, storage.ErrNotFound):
		WriteError(w, http.StatusNotFound, "not found")
	case errors.Is(err, storage.ErrExists):
		WriteError(w, http.StatusConflict, "already exists")
	default:
		log.Error("request failed", "method", r.Method, "path", r.URL.Path, "error", err)
		WriteError(w, http.StatusInternalServerError, "internal error")
	}
}

// Decode reads a JSON body strictly: bounded, unknown fields refused.
func Decode(r *http.Request, v any) error {
	dec := json.NewDecoder(io.LimitReader(r.Body, MaxBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return input.Errorf("request body: %v", err)
	}
	return nil
}

// RemoteIP keys rate limits by the connecting address. The console is
// reached directly (no proxy headers are trusted), so RemoteAddr is the
// client; IPv6 clients are bucketed by /64.
func RemoteIP(r *http.Request) (string, error) {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	return httprate.CanonicalizeIP(host), nil
}

// SecurityHeaders sets the headers every answer carries.
func SecurityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("X-Frame-Options", "DENY")
		h.Set("Referrer-Policy", "same-origin")
		h.Set("Content-Security-Policy", "default-src 'self'; style-src 'self' 'unsafe-inline'; img-src 'self' data:; frame-ancestors 'none'; form-action 'self'")
		next.ServeHTTP(w, r)
	})
}
