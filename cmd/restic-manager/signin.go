package main

import (
	"errors"
	"flag"
	"fmt"
	"net/url"
	"strings"

	"github.com/restic-manager/restic-manager/console/auth"
)

// signInFlags configure how people sign in: an OpenID provider, and
// whether passwords still work.
type signInFlags struct {
	issuer, clientID, secretFile, rolesClaim  string
	adminValues, operatorValues, viewerValues string
	scopes, displayName, redirectURL          string
	localLogin                                bool
	breakGlass                                string
}

func (s *signInFlags) add(fs *flag.FlagSet) {
	fs.StringVar(&s.issuer, "oidc-issuer", "", "OpenID Connect issuer URL (its /.well-known/openid-configuration is read); turns on sign-in with the provider")
	fs.StringVar(&s.clientID, "oidc-client-id", "", "this console's client ID at the OpenID provider")
	fs.StringVar(&s.secretFile, "oidc-client-secret-file", "", "file holding the client secret at the OpenID provider")
	fs.StringVar(&s.rolesClaim, "oidc-roles-claim", "groups", "ID token or userinfo claim whose values map to roles (a dotted path reaches into objects: realm_access.roles)")
	fs.StringVar(&s.adminValues, "oidc-admin-values", "admin", "comma-separated claim values that make an admin")
	fs.StringVar(&s.operatorValues, "oidc-operator-values", "operator", "comma-separated claim values that make an operator")
	fs.StringVar(&s.viewerValues, "oidc-viewer-values", "viewer", "comma-separated claim values that make a viewer; a user with none of the values cannot sign in")
	fs.StringVar(&s.scopes, "oidc-scopes", "profile,email", "comma-separated scopes asked for besides openid (add groups where the provider needs it for the roles claim)")
	fs.StringVar(&s.displayName, "oidc-name", "", "the provider's name on the sign-in button (default: \"your organisation's account\")")
	fs.StringVar(&s.redirectURL, "oidc-redirect-url", "", "the callback URL registered at the provider (default: --public-url + "+auth.OIDCCallbackPath+", else from each request)")
	fs.BoolVar(&s.localLogin, "local-login", true, "allow password sign-in; false leaves it to the break-glass user alone (--break-glass-user)")
	fs.StringVar(&s.breakGlass, "break-glass-user", "admin", "the local account that keeps password sign-in when --local-login=false")
}

// options checks the flags and makes the console's sign-in options.
func (s *signInFlags) options() (*auth.OIDCConfig, error) {
	if s.issuer == "" {
		if s.clientID != "" || s.secretFile != "" {
			return nil, errors.New("--oidc-client-id and --oidc-client-secret-file need --oidc-issuer")
		}
		if !s.localLogin {
			return nil, errors.New("--local-login=false needs --oidc-issuer: otherwise only the break-glass user could sign in")
		}
		return nil, nil
	}
	if u, err := url.Parse(s.issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return nil, fmt.Errorf("--oidc-issuer %q: want an http(s) URL", s.issuer)
	}
	if s.clientID == "" || s.secretFile == "" {
		return nil, errors.New("--oidc-issuer needs --oidc-client-id and --oidc-client-secret-file")
	}
	secret, err := readToken(s.secretFile)
	if err != nil {
		return nil, fmt.Errorf("--oidc-client-secret-file: %w", err)
	}
	if strings.TrimSpace(s.rolesClaim) == "" {
		return nil, errors.New("--oidc-roles-claim must name a claim")
	}
	cfg := &auth.OIDCConfig{Issuer: s.issuer, ClientID: s.clientID, ClientSecret: secret, RolesClaim: strings.TrimSpace(s.rolesClaim),
		AdminValues: commaList(s.adminValues), OperatorValues: commaList(s.operatorValues), ViewerValues: commaList(s.viewerValues),
		Scopes: commaList(s.scopes), DisplayName: s.displayName, RedirectURL: s.redirectURL}
	if len(cfg.AdminValues)+len(cfg.OperatorValues)+len(cfg.ViewerValues) == 0 {
		return nil, errors.New("--oidc-admin-values, --oidc-operator-values and --oidc-viewer-values are all empty: nobody could sign in")
	}
	return cfg, nil
}

func commaList(s string) []string {
	var out []string
	for _, v := range strings.Split(s, ",") {
		if v = strings.TrimSpace(v); v != "" {
			out = append(out, v)
		}
	}
	return out
}
