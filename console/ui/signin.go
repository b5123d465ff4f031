package ui

import (
	"errors"
	"net/http"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/storage"
)

// loginData is what the sign-in page shows: the password form (unless
// password sign-in is off), the provider's button, or the second step.
func (s *Server) loginData(msg string) map[string]any {
	return map[string]any{"Error": msg, "OIDC": s.auth.OIDCEnabled(), "OIDCName": s.auth.OIDCName(), "LocalLoginOff": s.auth.LocalLoginOff()}
}

// loginFailure says in words why a password or a code was refused.
func loginFailure(err error) (string, int) {
	switch {
	case errors.Is(err, auth.ErrLocked):
		return "Too many failed logins from here. Try again later.", http.StatusTooManyRequests
	case errors.Is(err, auth.ErrDisabled):
		return "This account is disabled. Ask an administrator.", http.StatusForbidden
	case errors.Is(err, auth.ErrLocalLoginOff):
		return "Password sign-in is turned off: use your organisation's sign-in button.", http.StatusForbidden
	case errors.Is(err, auth.ErrWrongCode):
		return "Wrong or already used code. Enter the current code from your app, or an unused recovery code.", http.StatusUnauthorized
	case errors.Is(err, auth.ErrNoPendingLogin):
		return "The sign-in took too long or had too many wrong codes. Enter your password again.", http.StatusUnauthorized
	}
	return "Wrong username or password.", http.StatusUnauthorized
}

// formSecondFactor is the browser's second step: the code after the
// password.
func (s *Server) formSecondFactor(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, 64<<10)
	if err := r.ParseForm(); err != nil {
		http.Error(w, "bad form", http.StatusBadRequest)
		return
	}
	u, err := s.auth.FinishSecondFactor(w, r, r.PostForm.Get("code"))
	if err != nil {
		msg, code := loginFailure(err)
		data := s.loginData(msg)
		// Another try at the code, unless the step itself is gone.
		data["Step"] = "code"
		if errors.Is(err, auth.ErrNoPendingLogin) || errors.Is(err, auth.ErrLocked) {
			data["Step"] = ""
		}
		w.WriteHeader(code)
		s.render(w, "login.html", data)
		return
	}
	if err := s.auth.StartSession(w, u.Name); err != nil {
		httpx.Fail(s.log, w, r, err)
		return
	}
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

// pageSecondFactor sets up the user's second factor (and is where a
// session that must have one is sent).
func (s *Server) pageSecondFactor(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	sf, err := s.auth.SecondFactorOf(p.User)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	u, err := s.store.GetUser(p.User)
	if err != nil {
		s.pageError(w, r, err)
		return
	}
	s.render(w, "second-factor.html", map[string]any{"User": p, "SF": sf, "Required": p.MustEnrol, "OIDCUser": u.Source == auth.SourceOIDC})
}

// secondFactorQR is the PNG of the QR code of a second factor being set
// up; never cached, and gone once confirmed.
func (s *Server) secondFactorQR(w http.ResponseWriter, r *http.Request) {
	p, _ := auth.From(r.Context())
	img, err := s.auth.TOTPQRCode(p.User)
	if err != nil {
		if errors.Is(err, auth.ErrNoEnrolment) || errors.Is(err, storage.ErrNotFound) {
			http.Error(w, err.Error(), http.StatusNotFound)
			return
		}
		httpx.Fail(s.log, w, r, err)
		return
	}
	w.Header().Set("Content-Type", "image/png")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(img)
}
