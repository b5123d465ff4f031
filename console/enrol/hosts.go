package enrol

import (
	"context"
	"crypto/subtle"
	"errors"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// EnrollTTL is how long a one-time enrolment token stays usable.
const EnrollTTL = 24 * time.Hour

// ErrEnrollRefused: the enrolment token is unknown, used or expired.
var ErrEnrollRefused = errors.New("the enrolment token is unknown, used or expired")

// EnrollToken is a one-time token just issued for a host: shown once, only
// its hash is kept.
type EnrollToken struct {
	Token     string
	ExpiresAt time.Time
}

// CreateHost records a new host and issues its first enrolment token.
func (e *Enrol) CreateHost(name string) (storage.Host, EnrollToken, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return storage.Host{}, EnrollToken{}, fleet.Invalid("name is required (at most 200 characters)")
	}
	h := storage.Host{ID: token.Prefixed(wire.HostIDPrefix), Name: name, CreatedAt: time.Now().UTC()}
	if err := e.store.CreateHost(h); err != nil {
		return storage.Host{}, EnrollToken{}, err
	}
	et, err := e.issueEnrollToken(h.ID)
	return h, et, err
}

// NewEnrollToken issues a fresh one-time token for a host: to enrol it
// again (a new machine, a lost config) or to rotate its credential. The old
// credential keeps working until the agent enrols with the new token.
func (e *Enrol) NewEnrollToken(hostID string) (storage.Host, EnrollToken, error) {
	h, err := e.store.GetHost(hostID)
	if err != nil {
		return h, EnrollToken{}, err
	}
	et, err := e.issueEnrollToken(h.ID)
	return h, et, err
}

func (e *Enrol) issueEnrollToken(hostID string) (EnrollToken, error) {
	now := time.Now().UTC()
	tok := "rme_" + token.Random(32)
	et := EnrollToken{Token: tok, ExpiresAt: now.Add(EnrollTTL)}
	err := e.store.PutEnrollToken(token.Hash(tok), storage.EnrollToken{HostID: hostID, CreatedAt: now, ExpiresAt: et.ExpiresAt})
	return et, err
}

// Enrolled is what an enrolment gave: the host, its broker password (for
// the agent, once) and the ID of the enrolment key used, if one was.
type Enrolled struct {
	Host     storage.Host
	Password string
	KeyID    string
}

// Enroll exchanges a one-time token for the host's broker credential (the
// returned password, shown to the agent once) and registers the agent's
// public key; with an enrolment key instead (req.Key), it makes the host
// first (enrollWithKey).
func (e *Enrol) Enroll(ctx context.Context, req wire.EnrollRequest, remote string) (Enrolled, error) {
	if !seal.ValidRecipient(req.PublicKey) {
		return Enrolled{}, fleet.Invalid("public_key is not an age X25519 recipient")
	}
	if req.Key != "" {
		return e.enrollWithKey(ctx, req, remote)
	}
	et, err := e.store.ConsumeEnrollToken(token.Hash(req.Token), time.Now())
	if err != nil {
		e.log.Warn("enrolment refused: unknown, used or expired token", "remote", remote)
		return Enrolled{}, ErrEnrollRefused
	}
	password := token.Random(32)
	brokerHash, err := broker.MosquittoHash(password)
	if err != nil {
		return Enrolled{}, err
	}
	h, err := e.store.UpdateHost(et.HostID, func(h *storage.Host) error {
		h.CredentialHash = token.Hash(password)
		h.BrokerHash = brokerHash
		h.PublicKey = req.PublicKey
		h.Enrolled = true
		h.Hostname, h.OS, h.Arch = req.Hostname, req.OS, req.Arch
		return nil
	})
	if err != nil {
		return Enrolled{}, err
	}
	// A re-enrolment replaces the credential: drop a session made with the old one.
	e.disconnect(h.ID)
	// An external broker learns the new login before the agent tries it.
	if err := e.SyncBrokerAccounts(ctx); err != nil {
		e.log.Error("enrolled host may not reach the external broker yet", "host_id", h.ID, "error", err)
	}
	e.log.Info("host enrolled", "host_id", h.ID, "hostname", req.Hostname, "remote", remote)
	e.f.HostChanged(h)
	return Enrolled{Host: h, Password: password}, nil
}

// RevokeHost removes a host's credential and drops its connection at once;
// it cannot reconnect until enrolled again with a new token.
func (e *Enrol) RevokeHost(ctx context.Context, id, by string) (storage.Host, error) {
	h, err := e.store.UpdateHost(id, func(h *storage.Host) error {
		h.CredentialHash = nil
		h.BrokerHash = ""
		h.Enrolled = false
		h.Online = false
		return nil
	})
	if err != nil {
		return h, err
	}
	e.disconnect(h.ID)
	if err := e.SyncBrokerAccounts(ctx); err != nil {
		e.log.Error("revoked host still in the external broker's accounts", "host_id", h.ID, "error", err)
	}
	e.f.EndHostJobs(ctx, h.ID, "the host's credential was revoked by "+by)
	e.log.Warn("host credential revoked", "host_id", h.ID, "by", by)
	return h, nil
}

// DeleteHost removes a host: its credential stops working at once, its
// retained topics are cleared, its job history stays.
func (e *Enrol) DeleteHost(ctx context.Context, id, by string) error {
	if err := e.store.DeleteHost(id); err != nil {
		return err
	}
	e.disconnect(id)
	if err := e.SyncBrokerAccounts(ctx); err != nil {
		e.log.Error("deleted host still in the external broker's accounts", "host_id", id, "error", err)
	}
	for _, topic := range []string{wire.StatusTopic(id), wire.HealthTopic(id), wire.SchedulesDesiredTopic(id), wire.SchedulesReportedTopic(id)} {
		_ = e.pub.Publish(topic, nil, true, 0)
	}
	e.f.EndHostJobs(ctx, id, "the host was deleted by "+by)
	e.log.Warn("host deleted", "host_id", id, "by", by)
	return nil
}

// CreateIntegrationUser makes a read-only MQTT account for an integration
// (Home Assistant, Node-RED) and returns its password, shown once.
func (e *Enrol) CreateIntegrationUser(ctx context.Context, name string) (string, error) {
	if !validIntegrationName(name) {
		return "", fleet.Invalid("name: letters, digits, '-' and '_', not starting with %q", wire.HostIDPrefix)
	}
	password := token.Random(24)
	brokerHash, err := broker.MosquittoHash(password)
	if err != nil {
		return "", err
	}
	if err := e.store.PutIntegrationUser(storage.IntegrationUser{Name: name, PasswordHash: token.Hash(password), BrokerHash: brokerHash, CreatedAt: time.Now().UTC()}); err != nil {
		return "", err
	}
	if err := e.SyncBrokerAccounts(ctx); err != nil {
		e.log.Error("new integration user may not reach the external broker yet", "user", name, "error", err)
	}
	return password, nil
}

// UserDisconnector is implemented by a Publisher that can drop every
// connection logged in as a user (the embedded broker can). Integration
// clients choose their own client IDs, so Disconnector cannot find them.
type UserDisconnector interface {
	DisconnectUser(username string)
}

// DeleteIntegrationUser removes a read-only MQTT account: the embedded
// broker authenticates from the store on every connect and drops the
// account's live connections now; an external broker's accounts are
// written again without it.
func (e *Enrol) DeleteIntegrationUser(ctx context.Context, name, by string) error {
	if err := e.store.DeleteIntegrationUser(name); err != nil {
		return err
	}
	if d, ok := e.pub.(UserDisconnector); ok {
		d.DisconnectUser(name)
	}
	if err := e.SyncBrokerAccounts(ctx); err != nil {
		e.log.Error("deleted integration user still in the external broker's accounts", "user", name, "error", err)
	}
	e.log.Warn("integration user deleted", "user", name, "by", by)
	return nil
}

// validIntegrationName keeps integration logins apart from host IDs (the
// broker's ACL tells agents by the prefix).
func validIntegrationName(s string) bool {
	if len(s) == 0 || len(s) > 64 || strings.HasPrefix(s, wire.HostIDPrefix) {
		return false
	}
	for _, ch := range s {
		ok := ch >= 'a' && ch <= 'z' || ch >= 'A' && ch <= 'Z' || ch >= '0' && ch <= '9' || ch == '-' || ch == '_'
		if !ok {
			return false
		}
	}
	return true
}

// AuthenticateHost checks an agent's MQTT credential against its stored hash.
func (e *Enrol) AuthenticateHost(hostID string, password []byte) bool {
	if !wire.ValidID(hostID) || len(password) == 0 {
		return false
	}
	h, err := e.store.GetHost(hostID)
	if err != nil || !h.Enrolled || len(h.CredentialHash) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(token.Hash(string(password)), h.CredentialHash) == 1
}

// AuthenticateIntegration checks a read-only MQTT account.
func (e *Enrol) AuthenticateIntegration(user string, password []byte) bool {
	if len(password) == 0 || !wire.ValidID(user) {
		return false
	}
	u, err := e.store.GetIntegrationUser(user)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(token.Hash(string(password)), u.PasswordHash) == 1
}

func (e *Enrol) disconnect(id string) {
	if d, ok := e.pub.(fleet.Disconnector); ok {
		d.Disconnect(id)
	}
}
