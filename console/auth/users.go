package auth

import (
	"errors"
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
	if err := validPassword(password); err != nil {
		return err
	}
	hash, err := HashPassword(password)
	if err != nil {
		return err
	}
	return a.store.CreateUser(storage.User{Name: name, PasswordHash: hash, Role: role, CreatedAt: time.Now().UTC()})
}

// maxPassword bounds a password (argon2id reads all of it).
const maxPassword = 1024

func validPassword(pw string) error {
	if len(pw) < 12 || len(pw) > maxPassword {
		return input.Errorf("password: 12 to %d characters", maxPassword)
	}
	return nil
}

// ErrLastAdmin: the change would leave no enabled admin.
var ErrLastAdmin = errors.New("this is the last enabled admin: it cannot be removed, demoted or disabled; make another user admin first")

// UserChange is a partial update of a user; nil fields stay as they are.
type UserChange struct {
	Role     *string
	Password *string
	Disabled *bool
}

// UpdateUser changes a user's role, password or whether it is disabled. A
// new password, a changed role or disabling ends the user's sessions (its
// tokens follow the user's current role and state by themselves). The last
// enabled admin cannot be demoted or disabled (ErrLastAdmin).
func (a *Auth) UpdateUser(name string, ch UserChange) (storage.User, error) {
	if ch.Role == nil && ch.Password == nil && ch.Disabled == nil {
		return storage.User{}, input.Errorf("give role, password or disabled")
	}
	if ch.Role != nil && !ValidRole(*ch.Role) {
		return storage.User{}, input.Errorf("role must be admin, operator or viewer")
	}
	var hash string
	if ch.Password != nil {
		if err := validPassword(*ch.Password); err != nil {
			return storage.User{}, err
		}
		var err error
		if hash, err = HashPassword(*ch.Password); err != nil {
			return storage.User{}, err
		}
	}
	a.usersMu.Lock()
	defer a.usersMu.Unlock()
	var roleChanged bool
	u, err := a.store.UpdateUser(name, func(u *storage.User) error {
		next := *u
		if ch.Role != nil {
			next.Role = *ch.Role
		}
		if ch.Disabled != nil {
			next.Disabled = *ch.Disabled
		}
		if enabledAdmin(*u) && !enabledAdmin(next) {
			if err := a.otherEnabledAdmin(u.Name); err != nil {
				return err
			}
		}
		roleChanged = next.Role != u.Role
		if hash != "" {
			next.PasswordHash = hash
		}
		*u = next
		return nil
	})
	if err != nil {
		return storage.User{}, err
	}
	if hash != "" || roleChanged || u.Disabled {
		if _, err := a.store.EndSessions(name, a.now()); err != nil {
			return u, err
		}
	}
	return u, nil
}

// DeleteUser removes a user, ends its sessions and revokes its tokens. The
// last enabled admin cannot be removed (ErrLastAdmin).
func (a *Auth) DeleteUser(name string) error {
	a.usersMu.Lock()
	defer a.usersMu.Unlock()
	u, err := a.store.GetUser(name)
	if err != nil {
		return err
	}
	if enabledAdmin(u) {
		if err := a.otherEnabledAdmin(name); err != nil {
			return err
		}
	}
	// Gone first: from here its sessions and tokens name no user and stop
	// authenticating, before their records are removed.
	if err := a.store.DeleteUser(name); err != nil {
		return err
	}
	if _, err := a.store.EndSessions(name, a.now()); err != nil {
		return err
	}
	// A user made again under this name must not inherit the factor.
	if err := a.store.DeleteSecondFactor(name); err != nil && !errors.Is(err, storage.ErrNotFound) {
		return err
	}
	_, err = a.store.DeleteAPITokensOf(name)
	return err
}

func enabledAdmin(u storage.User) bool { return u.Role == RoleAdmin && !u.Disabled }

// otherEnabledAdmin returns ErrLastAdmin unless an enabled admin other than
// name exists. Called with usersMu held.
func (a *Auth) otherEnabledAdmin(name string) error {
	users, err := a.store.ListUsers()
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Name != name && enabledAdmin(u) {
			return nil
		}
	}
	return ErrLastAdmin
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

// DefaultTokenLife is how long a token lives when its maker says nothing.
const DefaultTokenLife = 90 * 24 * time.Hour

// TokenRequest is an API token to make.
type TokenRequest struct {
	Name string
	// ExpiresIn is a Go duration ("720h"); empty means DefaultTokenLife,
	// "0" never.
	ExpiresIn string
	// Role caps the token below the maker's role; empty means the maker's.
	Role string
}

// ErrRoleTooHigh: a token may not act with more than its maker may.
var ErrRoleTooHigh = errors.New("a token's role can be at most your own")

// CreateToken makes an API token for the principal's user; the token is
// returned this once, only its hash is kept. Its role is at most the
// principal's (which, for a token, is already capped by that token).
func (a *Auth) CreateToken(p Principal, req TokenRequest) (storage.APIToken, string, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" || len(name) > MaxNameLen {
		return storage.APIToken{}, "", input.Errorf("name is required (at most %d characters)", MaxNameLen)
	}
	role := req.Role
	if role == "" {
		role = p.Role
	}
	if !ValidRole(role) {
		return storage.APIToken{}, "", input.Errorf("role must be admin, operator or viewer")
	}
	if !p.Can(role) {
		return storage.APIToken{}, "", ErrRoleTooHigh
	}
	now := a.now().UTC()
	var expires time.Time
	if req.ExpiresIn == "" {
		expires = now.Add(DefaultTokenLife)
	} else {
		d, err := time.ParseDuration(req.ExpiresIn)
		if err != nil || d < 0 {
			return storage.APIToken{}, "", input.Errorf("expires_in must be a duration such as \"720h\", or \"0\" for never")
		}
		if d > 0 {
			expires = now.Add(d)
		}
	}
	tok := "rmt_" + token.Random(32)
	t := storage.APIToken{ID: token.NewID("tok"), Name: name, User: p.User, CreatedAt: now, ExpiresAt: expires, Role: role}
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
