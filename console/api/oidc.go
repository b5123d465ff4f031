package api

import (
	"errors"
	"html/template"
	"net/http"
	"strings"

	"github.com/restic-manager/restic-manager/console/auth"
)

// oidcLogin sends the browser to the OpenID provider.
func (s *Server) oidcLogin(w http.ResponseWriter, r *http.Request) {
	to, err := s.auth.BeginOIDC(r.Context(), w, s.baseURL(r)+auth.OIDCCallbackPath)
	if err != nil {
		s.oidcFailed(w, r, err)
		return
	}
	http.Redirect(w, r, to, http.StatusFound)
}

// oidcCallback is where the provider sends the browser back: a session
// and the dashboard, or a page that says why not.
func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	u, err := s.auth.FinishOIDC(r, w)
	if err != nil {
		s.oidcFailed(w, r, err)
		return
	}
	if err := s.auth.StartSession(w, u.Name); err != nil {
		s.oidcFailed(w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// baseURL is how the browser reaches the console: --public-url, else the
// request's own scheme and host.
func (s *Server) baseURL(r *http.Request) string {
	if s.opts.PublicURL != "" {
		return strings.TrimSuffix(s.opts.PublicURL, "/")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	return scheme + "://" + r.Host
}

// oidcPage is the page a refused sign-in lands on: a browser followed a
// redirect here, so it gets words and a way back, not JSON.
var oidcPage = template.Must(template.New("oidc").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Sign-in refused · restic-manager</title><link rel="stylesheet" href="/static/app.css"></head>
<body><main class="login" id="oidc-refused"><h1>Sign-in refused</h1><p class="error" role="alert" id="oidc-error">{{.}}</p><p><a href="/login">Back to the sign-in page</a></p></main></body></html>`))

func (s *Server) oidcFailed(w http.ResponseWriter, r *http.Request, err error) {
	code, msg := http.StatusBadGateway, "The sign-in through the OpenID provider failed; the console's log has the details. Try again, or ask your administrator."
	var oe *auth.OIDCError
	switch {
	case errors.As(err, &oe):
		code, msg = oe.Status, oe.Msg
	case errors.Is(err, auth.ErrOIDCOff):
		code, msg = http.StatusNotFound, err.Error()
	default:
		s.log.Error("OpenID sign-in failed", "error", err, "remote", r.RemoteAddr)
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	if err := oidcPage.Execute(w, msg); err != nil {
		s.log.Error("render", "page", "oidc", "error", err)
	}
}
