package enrol

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/console/fleet"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// An enrolment key is a standing permission to add hosts to the fleet: it
// must end. A year covers a yearly image rebuild; anything longer is a
// key nobody remembers making.
const (
	MaxEnrollKeyTTL  = 365 * 24 * time.Hour
	MaxEnrollKeyUses = 1_000_000
	// EnrollKeyPrefix starts every enrolment key, so that one found in a
	// log or a repository is recognised (one-time tokens start rme_, API
	// tokens rmt_).
	EnrollKeyPrefix = "rmk_"
)

// ErrAgentLabelsForbidden: the agent asked for labels of its own with a
// key that gives its own only.
var ErrAgentLabelsForbidden = errors.New("this enrolment key gives its own labels only")

// refusal is an enrolment refused for its credential: errors.Is it
// ErrEnrollRefused, and its message says why (the caller holds the key, so
// saying that it expired or is used up tells it nothing it could abuse).
type refusal string

func (r refusal) Error() string        { return string(r) }
func (r refusal) Is(target error) bool { return target == ErrEnrollRefused }

// EnrollKeySpec is what an admin asks for in a new enrolment key.
type EnrollKeySpec struct {
	Name   string
	Labels map[string]string
	// MaxUses caps the hosts the key makes; 0 is no cap.
	MaxUses int
	// ExpiresIn is a Go duration ("720h"), required, at most MaxEnrollKeyTTL.
	ExpiresIn string
	// AllowAgentLabels lets agents add labels of their own; nil means yes.
	AllowAgentLabels *bool
}

// CreateEnrollKey makes a reusable enrolment key and returns its record and
// the key itself, shown once: only its hash is kept.
func (e *Enrol) CreateEnrollKey(spec EnrollKeySpec, by string) (storage.EnrollKey, string, error) {
	name := strings.TrimSpace(spec.Name)
	if name == "" || len(name) > 200 {
		return storage.EnrollKey{}, "", fleet.Invalid("name is required (at most 200 characters)")
	}
	if err := wire.ValidateLabels(spec.Labels); err != nil {
		return storage.EnrollKey{}, "", wireInput(err)
	}
	if spec.MaxUses < 0 || spec.MaxUses > MaxEnrollKeyUses {
		return storage.EnrollKey{}, "", fleet.Invalid("max_uses must be 0 (no limit) to %d", MaxEnrollKeyUses)
	}
	if strings.TrimSpace(spec.ExpiresIn) == "" {
		return storage.EnrollKey{}, "", fleet.Invalid("expires_in is required: a duration such as \"720h\" (at most %s): an enrolment key must end", fmtHours(MaxEnrollKeyTTL))
	}
	ttl, err := time.ParseDuration(strings.TrimSpace(spec.ExpiresIn))
	if err != nil || ttl <= 0 || ttl > MaxEnrollKeyTTL {
		return storage.EnrollKey{}, "", fleet.Invalid("expires_in must be a duration such as \"720h\", more than 0 and at most %s", fmtHours(MaxEnrollKeyTTL))
	}
	now := time.Now().UTC()
	k := storage.EnrollKey{
		ID: token.NewID("ekey"), Name: name, Labels: spec.Labels, AllowAgentLabels: spec.AllowAgentLabels == nil || *spec.AllowAgentLabels,
		MaxUses: spec.MaxUses, CreatedBy: by, CreatedAt: now, ExpiresAt: now.Add(ttl),
	}
	if len(k.Labels) == 0 {
		k.Labels = nil
	}
	key := EnrollKeyPrefix + token.Random(32)
	if err := e.store.CreateEnrollKey(token.Hash(key), k); err != nil {
		return storage.EnrollKey{}, "", err
	}
	e.log.Info("enrolment key created", "key_id", k.ID, "name", k.Name, "max_uses", k.MaxUses, "expires_at", k.ExpiresAt, "by", by)
	return k, key, nil
}

// DeleteEnrollKey removes an enrolment key: from now on it makes no host.
// The hosts it made stay enrolled.
func (e *Enrol) DeleteEnrollKey(id, by string) error {
	if err := e.store.DeleteEnrollKey(id); err != nil {
		return err
	}
	e.log.Warn("enrolment key deleted", "key_id", id, "by", by)
	return nil
}

// enrollWithKey makes a new host with an enrolment key: named req.Name (or
// the agent's hostname), labelled with the key's labels and the agent's
// own (the key's win on a conflict) unless the key forbids them. The use
// is counted in the transaction that stores the host.
func (e *Enrol) enrollWithKey(ctx context.Context, req wire.EnrollRequest, remote string) (Enrolled, error) {
	name := strings.TrimSpace(req.Name)
	if name == "" {
		name = strings.TrimSpace(req.Hostname)
		if len(name) > wire.MaxEnrollName {
			name = name[:wire.MaxEnrollName]
		}
	}
	if name == "" || len(name) > wire.MaxEnrollName {
		return Enrolled{}, fleet.Invalid("name: 1 to %d characters (the agent sent no hostname: give it --name)", wire.MaxEnrollName)
	}
	hash := token.Hash(req.Key)
	now := time.Now()
	// Checked once before the password is hashed, so that a stale or
	// unknown key costs the console no work; UseEnrollKey checks again.
	k, err := e.store.GetEnrollKey(hash, now)
	if err == nil {
		_, err = hostLabels(k, req.Labels)
	}
	if err != nil {
		return Enrolled{}, e.keyRefused(k, err, remote)
	}
	password := token.Random(32)
	brokerHash, err := broker.MosquittoHash(password)
	if err != nil {
		return Enrolled{}, err
	}
	k, h, err := e.store.UseEnrollKey(hash, now, func(k storage.EnrollKey) (storage.Host, error) {
		labels, err := hostLabels(k, req.Labels)
		if err != nil {
			return storage.Host{}, err
		}
		return storage.Host{
			ID: token.Prefixed(wire.HostIDPrefix), Name: name, Labels: labels, CreatedAt: now.UTC(),
			CredentialHash: token.Hash(password), BrokerHash: brokerHash, PublicKey: req.PublicKey, Enrolled: true,
			Hostname: req.Hostname, OS: req.OS, Arch: req.Arch,
		}, nil
	})
	if err != nil {
		return Enrolled{}, e.keyRefused(k, err, remote)
	}
	// An external broker learns the new login before the agent tries it.
	if err := e.SyncBrokerAccounts(ctx); err != nil {
		e.log.Error("enrolled host may not reach the external broker yet", "host_id", h.ID, "error", err)
	}
	e.log.Info("host enrolled with a key", "host_id", h.ID, "name", h.Name, "key_id", k.ID, "uses", k.Uses, "hostname", req.Hostname, "remote", remote)
	// Its labels bring its policies (schedules, a repository) at once.
	e.f.HostChanged(h)
	return Enrolled{Host: h, Password: password, KeyID: k.ID}, nil
}

// hostLabels are the labels a host made with k gets: the key's, and the
// agent's own where the key has none of that name, if the key allows them.
func hostLabels(k storage.EnrollKey, agent map[string]string) (map[string]string, error) {
	if len(agent) > 0 && !k.AllowAgentLabels {
		return nil, fmt.Errorf("%w: enrol without labels (it gives %s)", ErrAgentLabelsForbidden, labelText(k.Labels))
	}
	out := maps.Clone(agent)
	if out == nil {
		out = map[string]string{}
	}
	maps.Copy(out, k.Labels)
	if err := wire.ValidateLabels(out); err != nil {
		return nil, wireInput(err)
	}
	if len(out) == 0 {
		return nil, nil
	}
	return out, nil
}

// keyRefused turns a refused key into what the agent is told, and logs it.
func (e *Enrol) keyRefused(k storage.EnrollKey, err error, remote string) error {
	var out error
	switch {
	case errors.Is(err, storage.ErrNotFound):
		out = refusal("the enrolment key is unknown or was deleted")
	case errors.Is(err, storage.ErrEnrollKeyExpired):
		out = refusal(fmt.Sprintf("the enrolment key %q expired at %s: make a new one in the console", k.Name, k.ExpiresAt.UTC().Format(time.RFC3339)))
	case errors.Is(err, storage.ErrEnrollKeyUsedUp):
		out = refusal(fmt.Sprintf("the enrolment key %q is used up (it made its %d hosts)", k.Name, k.MaxUses))
	default:
		return err
	}
	e.log.Warn("enrolment refused", "key_id", k.ID, "reason", out.Error(), "remote", remote)
	return out
}

func labelText(labels map[string]string) string {
	if len(labels) == 0 {
		return "none"
	}
	var parts []string
	for _, k := range slices.Sorted(maps.Keys(labels)) {
		parts = append(parts, k+"="+labels[k])
	}
	return strings.Join(parts, ",")
}

// wireInput turns wire's refusal into an input error with its message
// alone.
func wireInput(err error) error {
	if errors.Is(err, wire.ErrBadLabels) {
		return fleet.Invalid("%s", err)
	}
	if errors.Is(err, wire.ErrInvalid) {
		return fleet.Invalid("%s", strings.TrimPrefix(err.Error(), wire.ErrInvalid.Error()+": "))
	}
	return err
}

// fmtHours writes a duration in whole hours, as an operator types it.
func fmtHours(d time.Duration) string { return fmt.Sprintf("%dh", int(d.Hours())) }
