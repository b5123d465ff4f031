package console

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestDownloadsServeOnlyAgentBinaries(t *testing.T) {
	dir := t.TempDir()
	_ = os.WriteFile(filepath.Join(dir, "restic-manager-agent-linux-amd64"), []byte("ELF..."), 0o755)
	_ = os.WriteFile(filepath.Join(dir, "secret.txt"), []byte("nope"), 0o600)
	c, _, _ := newTestConsole(t, func(o *Options) {
		o.DownloadsDir = dir
		o.CAPEM = []byte("-----BEGIN CERTIFICATE-----\n")
	})
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	get := func(p string) (int, string) {
		resp, err := http.Get(srv.URL + p)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if code, body := get("/downloads/restic-manager-agent-linux-amd64"); code != 200 || body != "ELF..." {
		t.Errorf("agent binary: %d %q", code, body)
	}
	for _, p := range []string{"/downloads/secret.txt", "/downloads/..%2fsecret.txt", "/downloads/restic-manager-agent-linux-mips"} {
		if code, _ := get(p); code != 404 {
			t.Errorf("%s: %d, want 404", p, code)
		}
	}
	if code, body := get("/install.sh"); code != 200 || !strings.HasPrefix(body, "#!/bin/sh") {
		t.Errorf("install.sh: %d", code)
	}
	if code, body := get("/install.ps1"); code != 200 || !strings.Contains(body, "param(") {
		t.Errorf("install.ps1: %d", code)
	}
	if code, body := get("/ca.pem"); code != 200 || !strings.Contains(body, "CERTIFICATE") {
		t.Errorf("ca.pem: %d", code)
	}
}
