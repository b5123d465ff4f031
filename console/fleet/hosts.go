package fleet

import (
	"context"
	"crypto/subtle"
	"errors"
	"maps"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// EnrollTTL is how long a one-time enrolment token stays usable.
const EnrollTTL = 24 * time.Hour

// ErrEnrollRefused: the enrolment token is unknown, used or expired.
var ErrEnrollRefused = errors.New("the enrolment token is unknown, used or expired")

var (
	_ broker.Authenticator = (*Fleet)(nil)
	_ broker.Ingestor      = (*Fleet)(nil)
)

// EnrollToken is a one-time token just issued for a host: shown once, only
// its hash is kept.
type EnrollToken struct {
	Token     string
	ExpiresAt time.Time
}

// CreateHost records a new host and issues its first enrolment token.
func (f *Fleet) CreateHost(name string) (storage.Host, EnrollToken, error) {
	name = strings.TrimSpace(name)
	if name == "" || len(name) > 200 {
		return storage.Host{}, EnrollToken{}, Invalid("name is required (at most 200 characters)")
	}
	h := storage.Host{ID: token.Prefixed(wire.HostIDPrefix), Name: name, CreatedAt: time.Now().UTC()}
	if err := f.store.CreateHost(h); err != nil {
		return storage.Host{}, EnrollToken{}, err
	}
	et, err := f.issueEnrollToken(h.ID)
	return h, et, err
}

// NewEnrollToken issues a fresh one-time token for a host: to enrol it
// again (a new machine, a lost config) or to rotate its credential. The old
// credential keeps working until the agent enrols with the new token.
func (f *Fleet) NewEnrollToken(hostID string) (storage.Host, EnrollToken, error) {
	h, err := f.store.GetHost(hostID)
	if err != nil {
		return h, EnrollToken{}, err
	}
	et, err := f.issueEnrollToken(h.ID)
	return h, et, err
}

func (f *Fleet) issueEnrollToken(hostID string) (EnrollToken, error) {
	now := time.Now().UTC()
	tok := "rme_" + token.Random(32)
	et := EnrollToken{Token: tok, ExpiresAt: now.Add(EnrollTTL)}
	err := f.store.PutEnrollToken(token.Hash(tok), storage.EnrollToken{HostID: hostID, CreatedAt: now, ExpiresAt: et.ExpiresAt})
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
func (f *Fleet) Enroll(ctx context.Context, req wire.EnrollRequest, remote string) (Enrolled, error) {
	if !seal.ValidRecipient(req.PublicKey) {
		return Enrolled{}, Invalid("public_key is not an age X25519 recipient")
	}
	if req.Key != "" {
		return f.enrollWithKey(ctx, req, remote)
	}
	et, err := f.store.ConsumeEnrollToken(token.Hash(req.Token), time.Now())
	if err != nil {
		f.log.Warn("enrolment refused: unknown, used or expired token", "remote", remote)
		return Enrolled{}, ErrEnrollRefused
	}
	password := token.Random(32)
	brokerHash, err := broker.MosquittoHash(password)
	if err != nil {
		return Enrolled{}, err
	}
	h, err := f.store.UpdateHost(et.HostID, func(h *storage.Host) error {
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
	f.disconnect(h.ID)
	// An external broker learns the new login before the agent tries it.
	if err := f.SyncBrokerAccounts(ctx); err != nil {
		f.log.Error("enrolled host may not reach the external broker yet", "host_id", h.ID, "error", err)
	}
	f.log.Info("host enrolled", "host_id", h.ID, "hostname", req.Hostname, "remote", remote)
	f.hostChanged(h)
	return Enrolled{Host: h, Password: password}, nil
}

// RevokeHost removes a host's credential and drops its connection at once;
// it cannot reconnect until enrolled again with a new token.
func (f *Fleet) RevokeHost(ctx context.Context, id, by string) (storage.Host, error) {
	h, err := f.store.UpdateHost(id, func(h *storage.Host) error {
		h.CredentialHash = nil
		h.BrokerHash = ""
		h.Enrolled = false
		h.Online = false
		return nil
	})
	if err != nil {
		return h, err
	}
	f.disconnect(h.ID)
	if err := f.SyncBrokerAccounts(ctx); err != nil {
		f.log.Error("revoked host still in the external broker's accounts", "host_id", h.ID, "error", err)
	}
	f.endHostJobs(ctx, h.ID, "the host's credential was revoked by "+by)
	f.log.Warn("host credential revoked", "host_id", h.ID, "by", by)
	return h, nil
}

// DeleteHost removes a host: its credential stops working at once, its
// retained topics are cleared, its job history stays.
func (f *Fleet) DeleteHost(ctx context.Context, id, by string) error {
	if err := f.store.DeleteHost(id); err != nil {
		return err
	}
	f.disconnect(id)
	if err := f.SyncBrokerAccounts(ctx); err != nil {
		f.log.Error("deleted host still in the external broker's accounts", "host_id", id, "error", err)
	}
	for _, topic := range []string{wire.StatusTopic(id), wire.HealthTopic(id), wire.SchedulesDesiredTopic(id), wire.SchedulesReportedTopic(id)} {
		_ = f.pub.Publish(topic, nil, true, 0)
	}
	f.endHostJobs(ctx, id, "the host was deleted by "+by)
	f.log.Warn("host deleted", "host_id", id, "by", by)
	return nil
}

// HostChange is a partial update of a host's own settings.
type HostChange struct {
	Name *string
	// StaleAfter overrides the staleness threshold; "" derives it from the
	// host's schedules again.
	StaleAfter *string
	// Labels replace the host's whole set (wire.ValidateLabels); nil
	// leaves them, an empty map clears them.
	Labels map[string]string
}

// UpdateHost renames a host, sets its staleness threshold or its labels.
func (f *Fleet) UpdateHost(id string, ch HostChange) (storage.Host, error) {
	if err := wire.ValidateLabels(ch.Labels); err != nil {
		return storage.Host{}, Invalid("%s", err)
	}
	var stale time.Duration
	if ch.StaleAfter != nil && *ch.StaleAfter != "" {
		d, err := time.ParseDuration(*ch.StaleAfter)
		if err != nil || d < 0 {
			return storage.Host{}, Invalid("stale_after must be a duration such as \"26h\" (empty: derive it from the schedules)")
		}
		stale = d
	}
	h, err := f.store.UpdateHost(id, func(h *storage.Host) error {
		if ch.Name != nil {
			n := strings.TrimSpace(*ch.Name)
			if n == "" || len(n) > 200 {
				return Invalid("name must be 1-200 characters")
			}
			h.Name = n
		}
		if ch.StaleAfter != nil {
			h.StaleAfter = stale
		}
		if ch.Labels != nil {
			h.Labels = nil
			if len(ch.Labels) > 0 {
				h.Labels = maps.Clone(ch.Labels)
			}
		}
		return nil
	})
	if err == nil && ch.Labels != nil {
		f.hostChanged(h)
	}
	return h, err
}

// CreateIntegrationUser makes a read-only MQTT account for an integration
// (Home Assistant, Node-RED) and returns its password, shown once.
func (f *Fleet) CreateIntegrationUser(ctx context.Context, name string) (string, error) {
	if !validIntegrationName(name) {
		return "", Invalid("name: letters, digits, '-' and '_', not starting with %q", wire.HostIDPrefix)
	}
	password := token.Random(24)
	brokerHash, err := broker.MosquittoHash(password)
	if err != nil {
		return "", err
	}
	if err := f.store.PutIntegrationUser(storage.IntegrationUser{Name: name, PasswordHash: token.Hash(password), BrokerHash: brokerHash, CreatedAt: time.Now().UTC()}); err != nil {
		return "", err
	}
	if err := f.SyncBrokerAccounts(ctx); err != nil {
		f.log.Error("new integration user may not reach the external broker yet", "user", name, "error", err)
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
func (f *Fleet) DeleteIntegrationUser(ctx context.Context, name, by string) error {
	if err := f.store.DeleteIntegrationUser(name); err != nil {
		return err
	}
	if d, ok := f.pub.(UserDisconnector); ok {
		d.DisconnectUser(name)
	}
	if err := f.SyncBrokerAccounts(ctx); err != nil {
		f.log.Error("deleted integration user still in the external broker's accounts", "user", name, "error", err)
	}
	f.log.Warn("integration user deleted", "user", name, "by", by)
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
func (f *Fleet) AuthenticateHost(hostID string, password []byte) bool {
	if !wire.ValidID(hostID) || len(password) == 0 {
		return false
	}
	h, err := f.store.GetHost(hostID)
	if err != nil || !h.Enrolled || len(h.CredentialHash) == 0 {
		return false
	}
	return subtle.ConstantTimeCompare(token.Hash(string(password)), h.CredentialHash) == 1
}

// AuthenticateIntegration checks a read-only MQTT account.
func (f *Fleet) AuthenticateIntegration(user string, password []byte) bool {
	if len(password) == 0 || !wire.ValidID(user) {
		return false
	}
	u, err := f.store.GetIntegrationUser(user)
	if err != nil {
		return false
	}
	return subtle.ConstantTimeCompare(token.Hash(string(password)), u.PasswordHash) == 1
}

func (f *Fleet) disconnect(id string) {
	if d, ok := f.pub.(Disconnector); ok {
		d.Disconnect(id)
	}
}
