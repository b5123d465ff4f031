package view

import (
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/storage"
)

// User is a person's account: never its password hash.
type User struct {
	Name      string    `json:"name"`
	Role      string    `json:"role"`
	Disabled  bool      `json:"disabled"`
	CreatedAt time.Time `json:"created_at"`
	// Source is "oidc" for an account the OpenID provider made (its role
	// is mapped at each sign-in); absent for a password account.
	Source string `json:"source,omitempty"`
}

// UserOf shows a user.
func UserOf(u storage.User) User {
	return User{Name: u.Name, Role: u.Role, Disabled: u.Disabled, CreatedAt: u.CreatedAt, Source: u.Source}
}

// Token is an API token as listed: never the token itself. Role is what
// the token may do now (its own role capped by its user's current one);
// ExpiresAt is absent for a token that never expires.
type Token struct {
	ID        string    `json:"id,omitempty"`
	Name      string    `json:"name"`
	User      string    `json:"user"`
	Role      string    `json:"role"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at,omitzero"`
	Expired   bool      `json:"expired,omitempty"`
	// LastUsedAt is when the token last authenticated a request (to about
	// a minute); absent: never.
	LastUsedAt time.Time `json:"last_used_at,omitzero"`
}

// TokensOf shows tokens with the role each acts with at now; users are
// their makers (a token whose user is gone shows no role).
func TokensOf(toks []storage.APIToken, users []storage.User, now time.Time) []Token {
	byName := make(map[string]storage.User, len(users))
	for _, u := range users {
		byName[u.Name] = u
	}
	out := make([]Token, 0, len(toks))
	for _, t := range toks {
		out = append(out, Token{ID: t.ID, Name: t.Name, User: t.User, Role: auth.TokenRole(t, byName[t.User]),
			CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, Expired: auth.TokenExpired(t, now), LastUsedAt: t.LastUsedAt})
	}
	return out
}

// IntegrationUser is an integration's MQTT account: never its hashes.
type IntegrationUser struct {
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at"`
}

// IntegrationUsersOf shows integration accounts.
func IntegrationUsersOf(users []storage.IntegrationUser) []IntegrationUser {
	out := make([]IntegrationUser, 0, len(users))
	for _, u := range users {
		out = append(out, IntegrationUser{Name: u.Name, CreatedAt: u.CreatedAt})
	}
	return out
}
