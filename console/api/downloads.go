package api

import (
	"net/http"
	"os"
	"path/filepath"
	"regexp"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/console/httpx"
	"github.com/restic-manager/restic-manager/deploy/install"
)

// agentBinary names the files /downloads serves: nothing else in the
// directory is reachable, and no path can climb out of it.
var agentBinary = regexp.MustCompile(`^restic-manager-agent-(linux|windows|darwin|freebsd)-(amd64|arm64|386|arm)$`)

// mountDownloads serves what a new machine needs before it has any
// credential: the install scripts, the agent binaries and the CA (which the
// scripts check against the fingerprint in the enrolment line).
func (s *Server) mountDownloads(r chi.Router) {
	r.Get("/install.sh", s.serveScript("install.sh", "text/x-shellscript; charset=utf-8"))
	r.Get("/install.ps1", s.serveScript("install.ps1", "text/plain; charset=utf-8"))
	r.Get("/ca.pem", func(w http.ResponseWriter, r *http.Request) {
		if len(s.opts.CAPEM) == 0 {
			httpx.WriteError(w, http.StatusNotFound, "this console does not use a generated CA")
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(s.opts.CAPEM)
	})
	r.Get("/downloads/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		if s.opts.DownloadsDir == "" || !agentBinary.MatchString(name) {
			httpx.WriteError(w, http.StatusNotFound, "not found")
			return
		}
		p := filepath.Join(s.opts.DownloadsDir, name)
		if _, err := os.Stat(p); err != nil {
			httpx.WriteError(w, http.StatusNotFound, "no agent for that platform on this console")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeFile(w, r, p)
	})
}

// serveScript serves an install script; install.sh carries the console's
// generated CA, so that it trusts that CA alone for its downloads.
func (s *Server) serveScript(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		b, err := install.Script(name, s.opts.CAPEM)
		if err != nil && len(s.opts.CAPEM) > 0 {
			// Served without the CA, the script trusts the machine's CAs
			// (or --ca-file) and fails closed on the private one.
			s.log.Error("install script served without the console's CA", "script", name, "err", err)
			b, err = install.Script(name, nil)
		}
		if err != nil {
			httpx.WriteError(w, http.StatusNotFound, "not found")
			return
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(b)
	}
}

// installCommands are the one-line installers for a new host's token. When
// the console serves HTTPS with its generated CA, they pin that CA (see
// package install); otherwise the machine's trust store decides. No line
// turns certificate verification off.
func (s *Server) installCommands(r *http.Request, token string) map[string]string {
	return s.installLines(r, func(c install.Console) (map[string]string, error) { return install.Commands(c, token) })
}

// keyInstallCommands are the one-line installers for an enrolment key,
// pinned alike.
func (s *Server) keyInstallCommands(r *http.Request, key string) map[string]string {
	return s.installLines(r, func(c install.Console) (map[string]string, error) { return install.KeyCommands(c, key) })
}

func (s *Server) installLines(r *http.Request, build func(install.Console) (map[string]string, error)) map[string]string {
	c := install.Console{URL: s.publicURL(r), CAFingerprint: s.opts.CAFingerprint}
	if r.TLS != nil {
		c.CAPEM = s.opts.CAPEM
	}
	cmds, err := build(c)
	if err != nil {
		// Without the pin rather than without the lines: they then fail
		// closed against the private CA, and the log says why.
		s.log.Error("install lines made without the CA pin", "err", err)
		c.CAPEM = nil
		cmds, _ = build(c)
	}
	return cmds
}
