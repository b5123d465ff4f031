package console

import (
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"regexp"

	"github.com/go-chi/chi/v5"

	"github.com/restic-manager/restic-manager/deploy/install"
)

// agentBinary names the files /downloads serves: nothing else in the
// directory is reachable, and no path can climb out of it.
var agentBinary = regexp.MustCompile(`^restic-manager-agent-(linux|windows|darwin|freebsd)-(amd64|arm64|386|arm)$`)

// mountDownloads serves what a new machine needs before it has any
// credential: the install scripts, the agent binaries and the CA (which the
// scripts check against the fingerprint in the enrolment line).
func (c *Console) mountDownloads(r chi.Router) {
	r.Get("/install.sh", c.serveScript("install.sh", "text/x-shellscript; charset=utf-8"))
	r.Get("/install.ps1", c.serveScript("install.ps1", "text/plain; charset=utf-8"))
	r.Get("/ca.pem", func(w http.ResponseWriter, r *http.Request) {
		if len(c.opts.CAPEM) == 0 {
			writeError(w, http.StatusNotFound, "this console does not use a generated CA")
			return
		}
		w.Header().Set("Content-Type", "application/x-pem-file")
		_, _ = w.Write(c.opts.CAPEM)
	})
	r.Get("/downloads/{name}", func(w http.ResponseWriter, r *http.Request) {
		name := chi.URLParam(r, "name")
		if c.opts.DownloadsDir == "" || !agentBinary.MatchString(name) {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		p := filepath.Join(c.opts.DownloadsDir, name)
		if _, err := os.Stat(p); err != nil {
			writeError(w, http.StatusNotFound, "no agent for that platform on this console")
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		http.ServeFile(w, r, p)
	})
}

func (c *Console) serveScript(name, contentType string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		b, err := fs.ReadFile(install.Scripts, name)
		if err != nil {
			writeError(w, http.StatusNotFound, "not found")
			return
		}
		w.Header().Set("Content-Type", contentType)
		_, _ = w.Write(b)
	}
}

// installCommands are the one-line installers for a new host's token.
func (c *Console) installCommands(r *http.Request, token string) map[string]string {
	url := c.publicURL(r)
	fp := ""
	if c.opts.CAFingerprint != "" {
		fp = " --ca-fingerprint " + c.opts.CAFingerprint
	}
	insecure := ""
	if r.TLS != nil && len(c.opts.CAPEM) > 0 {
		insecure = "--insecure " // the script itself then pins the CA
	}
	return map[string]string{
		"linux":   "curl -fsSL " + insecure + url + "/install.sh | sudo sh -s -- --server " + url + " --token " + token + fp,
		"windows": winPrefix(insecure != "") + "& ([scriptblock]::Create((New-Object Net.WebClient).DownloadString('" + url + "/install.ps1'))) -Server " + url + " -Token " + token + pwshFP(c.opts.CAFingerprint),
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
