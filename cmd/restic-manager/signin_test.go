package main

import (
	"flag"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The sign-in flags refuse what cannot work with a message naming the
// flag, and make the provider's configuration from what can.
func TestSignInFlags(t *testing.T) {
	secret := filepath.Join(t.TempDir(), "secret")
	if err := os.WriteFile(secret, []byte("s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(t.TempDir(), "empty")
	if err := os.WriteFile(empty, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	parse := func(args ...string) (*signInFlags, error) {
		var s signInFlags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		s.add(fs)
		if err := fs.Parse(args); err != nil {
			return nil, err
		}
		_, err := s.options()
		return &s, err
	}
	good := []string{"--oidc-issuer", "https://idp.example.org/realms/x", "--oidc-client-id", "rm", "--oidc-client-secret-file", secret}
	for _, c := range []struct {
		args []string
		want string
	}{
		{[]string{"--local-login=false"}, "--local-login=false needs --oidc-issuer"},
		{[]string{"--oidc-client-id", "rm"}, "need --oidc-issuer"},
		{[]string{"--oidc-issuer", "idp.example.org", "--oidc-client-id", "rm", "--oidc-client-secret-file", secret}, "want an http(s) URL"},
		{[]string{"--oidc-issuer", "https://idp.example.org"}, "needs --oidc-client-id and --oidc-client-secret-file"},
		{append(good[:4:4], "--oidc-client-secret-file", empty), "is empty"},
		{append(good, "--oidc-roles-claim", " "), "--oidc-roles-claim must name a claim"},
		{append(good, "--oidc-admin-values", "", "--oidc-operator-values", "", "--oidc-viewer-values", ""), "nobody could sign in"},
	} {
		if _, err := parse(c.args...); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%v: %v, want %q", c.args, err, c.want)
		}
	}
	s, err := parse(append(good, "--oidc-operator-values", "ops, sre ,", "--local-login=false")...)
	if err != nil {
		t.Fatal(err)
	}
	cfg, _ := s.options()
	if cfg.ClientSecret != "s3cret" || strings.Join(cfg.OperatorValues, "|") != "ops|sre" || cfg.RolesClaim != "groups" ||
		strings.Join(cfg.AdminValues, "|") != "admin" || strings.Join(cfg.Scopes, "|") != "profile|email" || s.localLogin || s.breakGlass != "admin" {
		t.Errorf("config %+v, flags %+v", cfg, s)
	}
	if _, err := parse(); err != nil {
		t.Errorf("no sign-in flags: %v", err)
	}
}
