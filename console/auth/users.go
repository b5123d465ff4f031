package auth

import (
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// EnsureAdmin creates user "admin" when there are no users. It returns the
// generated password when it made one (so the caller can print it once).
func (a *Auth) EnsureAdmin(password string) (generated string, err error) {
	n, err := a.store.CountUsers()
	if err != nil || n > 0 {
		return "", err
	}
	if password == "" {
		password = token.Random(18)
		generated = password
	}
	hash, err := HashPassword(password)
	if err != nil {
		return "", err
	}
	if err := a.store.CreateUser(storage.User{Name: "admin", PasswordHash: hash, Role: RoleAdmin, CreatedAt: time.Now().UTC()}); err != nil {
		return "", err
	}
	return generated, nil
}

// CreateUser adds a person who logs in with a password.
func (a *Auth) CreateUser(name, password, role string) error {
	if !ValidRole(role) {
		return input.Errorf("role must be admin, operator or viewer")
	}
	if !validUserName(name) {
		return input.Errorf("name: 1-64 letters, digits, '.', '-', '_' or '@'")
	}
	if len(password) < 12 {
		return input.Errorf("password: at least 12 characters")
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return a.store.CreateUser(storage.User{Name: name, PasswordHash: hash, Role: role, CreatedAt: time.Now().UTC()})
}

func validUserName(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for _, ch := range s {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || strings.ContainsRune(".-_@", ch)
		if !ok {
			return false
		}
	}
	return true
}

// CreateToken makes an API token for the principal's user; the token is
// returned this once, only its hash is kept.
func (a *Auth) CreateToken(p Principal, name string) (storage.APIToken, string, error) {
	if strings.TrimSpace(name) == "" {
		return storage.APIToken{}, "", input.Errorf("name is required")
	}
	tok := "rmt_" + token.Random(32)
	t := storage.APIToken{ID: token.NewID("tok"), Name: name, User: p.User, CreatedAt: time.Now().UTC()}
	if err := a.store.PutAPIToken(token.Hash(tok), t); err != nil {
		return t, "", err
	}
	return t, tok, nil
}

// Tokens lists the principal's tokens (every token for admins).
func (a *Auth) Tokens(p Principal) ([]storage.APIToken, error) {
	all, err := a.store.ListAPITokens()
	if err != nil {
		return nil, err
	}
	out := []storage.APIToken{}
	for _, t := range all {
		if t.User == p.User || p.Role == RoleAdmin {
			out = append(out, t)
		}
	}
	return out, nil
}

// DeleteToken revokes one of the principal's tokens (any token for admins).
func (a *Auth) DeleteToken(p Principal, id string) error {
	toks, err := a.Tokens(p)
	if err != nil {
		return err
	}
	for _, t := range toks {
		if t.ID == id {
			return a.store.DeleteAPIToken(id)
		}
	}
	return storage.ErrNotFound
}
