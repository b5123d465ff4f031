// Command oidcprovider is the OpenID provider the sign-in tests run: the
// zitadel/oidc library's OpenID provider (discovery, signing keys published
// as JWKS, the authorization code flow with PKCE, the userinfo endpoint)
// with its example in-memory storage and login form, built pinned from the
// Go module proxy like the other tools. Only what the example hard-codes is
// set here: the issuer's address, one confidential web client, the users
// (from a JSON file) and a "groups" claim carrying each user's groups, which
// the example has no notion of and every real provider (Keycloak, Authentik,
// Entra) can be told to send.
//
// Usage:
//
//	oidcprovider -addr 127.0.0.1:0 -client-id ID -client-secret-file FILE \
//	    -redirect-uri URL -users FILE [-ready FILE]
//
// The users file is a JSON list of {"username", "password", "groups"}.
// The address actually listened on is written to -ready (and to standard
// output) once the provider answers, so a test can start it on port 0.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/zitadel/oidc/v3/example/server/exampleop"
	"github.com/zitadel/oidc/v3/example/server/storage"
	"github.com/zitadel/oidc/v3/pkg/oidc"
	"github.com/zitadel/oidc/v3/pkg/op"
	"golang.org/x/text/language"
)

// groupsScope asks for the groups claim, as Keycloak's and Authentik's
// "groups" scopes do.
const groupsScope = "groups"

type fileUser struct {
	Username string   `json:"username"`
	Password string   `json:"password"`
	Groups   []string `json:"groups"`
}

// users is the example storage's user store, read from a file, plus the
// groups of each user.
type users struct {
	byID   map[string]*storage.User
	groups map[string][]string
}

func (u users) GetUserByID(id string) *storage.User { return u.byID[id] }
func (u users) GetUserByUsername(name string) *storage.User {
	for _, x := range u.byID {
		if x.Username == name {
			return x
		}
	}
	return nil
}
func (u users) ExampleClientID() string { return storage.ServiceUserID }

func loadUsers(path string) (users, error) {
	raw, err := os.ReadFile(path)
	if err != nil {
		return users{}, fmt.Errorf("read users: %w", err)
	}
	var list []fileUser
	if err := json.Unmarshal(raw, &list); err != nil {
		return users{}, fmt.Errorf("users file %s: %w", path, err)
	}
	out := users{byID: map[string]*storage.User{}, groups: map[string][]string{}}
	for i, f := range list {
		if f.Username == "" || f.Password == "" {
			return users{}, fmt.Errorf("users file %s: entry %d needs username and password", path, i)
		}
		id := fmt.Sprintf("sub-%d-%s", i, f.Username)
		out.byID[id] = &storage.User{ID: id, Username: f.Username, Password: f.Password, FirstName: f.Username, LastName: "Test",
			Email: f.Username + "@example.org", EmailVerified: true, PreferredLanguage: language.English}
		out.groups[id] = f.Groups
	}
	return out, nil
}

// withGroups adds the groups claim to the example storage's ID tokens and
// userinfo answers.
type withGroups struct {
	*storage.Storage
	users users
}

func (s withGroups) SetUserinfoFromScopes(ctx context.Context, ui *oidc.UserInfo, userID, clientID string, scopes []string) error {
	if err := s.Storage.SetUserinfoFromScopes(ctx, ui, userID, clientID, scopes); err != nil {
		return err
	}
	for _, sc := range scopes {
		if sc == groupsScope {
			ui.AppendClaims("groups", s.groupsOf(userID))
		}
		// The ID token of a code flow leaves the profile scope's claims
		// to userinfo; the user's name is in it all the same, as
		// Keycloak and Authentik put it there.
		if sc == oidc.ScopeOpenID {
			if u := s.users.GetUserByID(userID); u != nil {
				ui.PreferredUsername = u.Username
			}
		}
	}
	return nil
}

func (s withGroups) SetUserinfoFromToken(ctx context.Context, ui *oidc.UserInfo, tokenID, subject, origin string) error {
	if err := s.Storage.SetUserinfoFromToken(ctx, ui, tokenID, subject, origin); err != nil {
		return err
	}
	ui.AppendClaims("groups", s.groupsOf(ui.Subject))
	return nil
}

func (s withGroups) groupsOf(userID string) []string {
	g := s.users.groups[userID]
	if g == nil {
		g = []string{}
	}
	return g
}

// GetClientByClientID lets the client ask for the groups scope (the
// example allows only its own custom scope).
func (s withGroups) GetClientByClientID(ctx context.Context, id string) (op.Client, error) {
	c, err := s.Storage.GetClientByClientID(ctx, id)
	if err != nil {
		return nil, err
	}
	return groupsClient{c}, nil
}

type groupsClient struct{ op.Client }

func (c groupsClient) IsScopeAllowed(scope string) bool {
	return scope == groupsScope || c.Client.IsScopeAllowed(scope)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "oidcprovider:", err)
		os.Exit(1)
	}
}

func run() error {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	clientID := flag.String("client-id", "restic-manager", "the one client's ID")
	secretFile := flag.String("client-secret-file", "", "file holding the client's secret")
	redirect := flag.String("redirect-uri", "", "the client's redirect URIs, comma separated")
	usersFile := flag.String("users", "", "JSON list of {username, password, groups}")
	ready := flag.String("ready", "", "file to write the issuer URL to once listening")
	flag.Parse()
	if *secretFile == "" || *redirect == "" || *usersFile == "" {
		return errors.New("-client-secret-file, -redirect-uri and -users are required")
	}
	secret, err := os.ReadFile(*secretFile)
	if err != nil {
		return fmt.Errorf("client secret: %w", err)
	}
	us, err := loadUsers(*usersFile)
	if err != nil {
		return err
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		return err
	}
	issuer := "http://" + ln.Addr().String() + "/"
	storage.RegisterClients(storage.WebClient(*clientID, strings.TrimSpace(string(secret)), strings.Split(*redirect, ",")...))
	st := withGroups{Storage: storage.NewStorage(us), users: us}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	router := exampleop.SetupServer(issuer, st, log, false)
	srv := &http.Server{Handler: router}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() {
		<-ctx.Done()
		_ = srv.Close()
	}()
	if *ready != "" {
		if err := os.WriteFile(*ready, []byte(issuer), 0o600); err != nil {
			return err
		}
	}
	fmt.Println(issuer)
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
