package api

import (
	"io/fs"
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

func (s *Server) serveScript(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) {
		b, err := fs.ReadFile(install.Scripts, name)
		if err != nil {
			httpx.WriteError(w, http.StatusNotFound, "not found")
			return
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(b)
	}
}

// installCommands are the one-line installers for a new host's token.
func (s *Server) installCommands(r *http.Request, token string) map[string]string {
	base := s.publicURL(r)
	fp := ""
	if s.opts.CAFingerprint != "" {
		fp = " --ca-fingerprint " + s.opts.CAFingerprint
	}
	insecure := ""
	if r.TLS != nil && len(s.opts.CAPEM) > 0 {
		insecure = "--insecure " // the script itself then pins the CA
	}
	return map[string]string{
		"linux":   "curl -fsSL " + insecure + base + "/install.sh | sudo sh -s -- --server " + base + " --token " + token + fp,
		"windows": winPrefix(insecure != "") + "& ([scriptblock]::Create((New-Object Net.WebClient).DownloadString('" + base + "/install.ps1'))) -Server " + base + " -Token " + token + pwshFP(s.opts.CAFingerprint),
	}
}

func pwshFP(fp string) string {
	if fp == "" {
		return ""
	}
	return " -CaFingerprint " + fp
}

// winPrefix lets PowerShell fetch the script from a console whose CA it does
// not know yet; the script then pins the CA by its fingerprint.
func winPrefix(privateCA bool) string {
	if !privateCA {
		return ""
	}
	return "[Net.ServicePointManager]::SecurityProtocol = 'Tls12'; [Net.ServicePointManager]::ServerCertificateValidationCallback = { $true }; "
}
