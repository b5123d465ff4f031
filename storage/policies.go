package storage

import (
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/dgraph-io/badger/v4"

	"github.com/restic-manager/restic-manager/schedules"
)

// Policy is a named template of schedules for every host whose labels
// match its selector.
type Policy struct {
	ID       string            `json:"id"`
	Name     string            `json:"name"`
	Selector map[string]string `json:"selector"`
	// RepoID is the repository the policy's schedules use (it binds the
	// matching hosts to it); or RepoTemplate makes one per host.
	RepoID       string               `json:"repo_id,omitempty"`
	RepoTemplate *RepoTemplate        `json:"repo_template,omitempty"`
	Schedules    []schedules.Schedule `json:"schedules"`
	// RPO is the age past which a host's last good backup breaches the
	// policy (0: none).
	RPO time.Duration `json:"rpo,omitempty"`
	// ForgetGuardPercent overrides the share of a host's snapshots a
	// forget may remove without approval (0: the console's default).
	ForgetGuardPercent int `json:"forget_guard_percent,omitempty"`
	// Drill is the restore drill cadence of the policy's hosts (nil:
	// none): one drill schedule per host beside the policy's others.
	Drill *PolicyDrill `json:"drill,omitempty"`
	// CopyToRepoID: after each successful backup of a matched host into
	// the policy's repository, a copy of the host's snapshots goes there
	// (console/copies); the policy binds its hosts to it too.
	CopyToRepoID string `json:"copy_to_repo_id,omitempty"`
	// CopyLagMax: the copy_lag alert fires when more than this many
	// snapshots of the source are missing in the destination (0: never).
	CopyLagMax int       `json:"copy_lag_max,omitempty"`
	CreatedAt  time.Time `json:"created_at"`
	UpdatedAt  time.Time `json:"updated_at"`
}

// PolicyDrill is a policy's drill cadence: CONTRACT.md's drill {cron,
// sample_files, sample_bytes}, with the schedule's time zone and jitter.
type PolicyDrill struct {
	Cron        string `json:"cron"`
	Timezone    string `json:"timezone,omitempty"`
	JitterS     *int   `json:"jitter_s,omitempty"`
	SampleFiles int    `json:"sample_files,omitempty"`
	SampleBytes int64  `json:"sample_bytes,omitempty"`
}

// RepoTemplate makes a repository per host: its URL with {host} (the
// host's name) and {host_id} replaced, a generated password, the
// environment as given (sealed with the repository), and an init job.
type RepoTemplate struct {
	// URL is the template as shown: without a password in its user
	// information. SecretURL, when set by the caller of PutPolicy, is the
	// whole URL, sealed there (SealedURL); read back it is empty:
	// TemplateURL opens it (a rest-server URL may carry a password).
	URL       string `json:"url"`
	SecretURL string `json:"-"`
	SealedURL []byte `json:"sealed_url,omitempty"`
	// Env is set by the caller of PutPolicy and sealed there (SealedEnv);
	// read back, it is empty: TemplateEnv opens it.
	Env       map[string]string `json:"-"`
	SealedEnv []byte            `json:"sealed_env,omitempty"`
	Init      bool              `json:"init"`
}

const policyPrefix = "policy/"

func policyKey(id string) []byte { return []byte(policyPrefix + id) }

// PutPolicy stores a policy (created or replaced). A repository
// template's environment (backend credentials) is sealed under the master
// key like a repository's secrets.
func (s *Store) PutPolicy(p Policy) error {
	if err := validID(p.ID); err != nil {
		return fmt.Errorf("storage: put policy: %w", err)
	}
	if t := p.RepoTemplate; t != nil {
		tc := *t
		if t.Env != nil { // nil keeps the sealed environment as it is
			tc.SealedEnv = nil
		}
		if len(t.Env) > 0 {
			plain, err := encode(t.Env)
			if err != nil {
				return fmt.Errorf("storage: put policy %s: %w", p.ID, err)
			}
			tc.SealedEnv = s.seal(plain, []byte("policy-env:"+p.ID))
			clear(plain)
		}
		tc.Env = nil
		if t.SecretURL != "" { // "" keeps the sealed URL as it is
			tc.SealedURL = s.seal([]byte(t.SecretURL), []byte("policy-url:"+p.ID))
		}
		tc.SecretURL = ""
		p.RepoTemplate = &tc
	}
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, policyKey(p.ID), p) })
}

// TemplateURL opens a policy's repository template URL (policies stored
// before it was sealed hold it in URL).
func (s *Store) TemplateURL(p Policy) (string, error) {
	if p.RepoTemplate == nil {
		return "", nil
	}
	if len(p.RepoTemplate.SealedURL) == 0 {
		return p.RepoTemplate.URL, nil
	}
	plain, err := s.open(p.RepoTemplate.SealedURL, []byte("policy-url:"+p.ID))
	if err != nil {
		return "", fmt.Errorf("storage: policy %s template URL: cannot decrypt: %w", p.ID, err)
	}
	return string(plain), nil
}

// TemplateEnv opens a policy's repository template environment.
func (s *Store) TemplateEnv(p Policy) (map[string]string, error) {
	if p.RepoTemplate == nil || len(p.RepoTemplate.SealedEnv) == 0 {
		return nil, nil
	}
	plain, err := s.open(p.RepoTemplate.SealedEnv, []byte("policy-env:"+p.ID))
	if err != nil {
		return nil, fmt.Errorf("storage: policy %s environment: cannot decrypt: %w", p.ID, err)
	}
	defer clear(plain)
	var env map[string]string
	if err := decode(plain, &env); err != nil {
		return nil, fmt.Errorf("storage: policy %s environment: %w", p.ID, err)
	}
	return env, nil
}

// GetPolicy returns one policy.
func (s *Store) GetPolicy(id string) (Policy, error) {
	var p Policy
	if err := s.get(policyKey(id), &p); err != nil {
		return p, fmt.Errorf("storage: get policy %s: %w", id, err)
	}
	return p, nil
}

// ListPolicies returns every policy, ordered by ID.
func (s *Store) ListPolicies() ([]Policy, error) {
	out := []Policy{}
	err := s.db.View(func(txn *badger.Txn) error {
		return eachRecord(txn, policyPrefix, func(p *Policy) { out = append(out, *p) })
	})
	if err != nil {
		return nil, fmt.Errorf("storage: list policies: %w", err)
	}
	return out, nil
}

// DeletePolicy removes a policy.
func (s *Store) DeletePolicy(id string) error {
	err := s.update(func(txn *badger.Txn) error {
		if err := present(txn, policyKey(id)); err != nil {
			return err
		}
		return txn.Delete(policyKey(id))
	})
	if err != nil {
		return fmt.Errorf("storage: delete policy %s: %w", id, err)
	}
	return nil
}

// schedulesBatch is how many hosts' schedule sets one transaction of
// UpdateSchedulesMany changes: a policy rollout over 10,000 hosts is 40
// commits, not 10,000, and one sync after the last of them.
const schedulesBatch = 250

// UpdateSchedulesMany is UpdateSchedules for many hosts in few
// transactions: fn gets a host's set and the host itself (read in the same
// transaction), changes the set and reports whether it did; the sets that
// changed are returned. Hosts that no longer exist are skipped.
//
// durable, when not nil, gets each batch's changed sets as soon as they are
// durable, in order, on one goroutine of its own while later batches are
// still being committed; every call has returned when UpdateSchedulesMany
// does. A policy rollout publishes from it, so the first agents apply
// their change while the console still writes the rest (on two cores the
// commits alone took ~0.6 s of a 10,000-host edit, one core idle).
func (s *Store) UpdateSchedulesMany(hostIDs []string, fn func(*HostSchedules, Host) (bool, error), durable func([]HostSchedules)) (_ []HostSchedules, err error) {
	ids := slices.Clone(hostIDs)
	slices.Sort(ids)
	ids = slices.Compact(ids)
	if durable != nil {
		batches := make(chan []HostSchedules, len(ids)/schedulesBatch+1)
		synced := make(chan error, 1)
		go func() {
			var err error
			for b := range batches {
				// A wait returns once a sync that began after the batch's
				// commit ended; the waits of batches committed meanwhile
				// share it.
				if err == nil {
					err = s.durable.wait()
				}
				if err == nil {
					durable(b)
				}
			}
			synced <- err
		}()
		send := func(b []HostSchedules) { batches <- b }
		defer func() {
			close(batches)
			if serr := <-synced; serr != nil && err == nil {
				err = fmt.Errorf("storage: update schedules: %w", serr)
			}
		}()
		return s.updateSchedulesMany(ids, fn, send)
	}
	return s.updateSchedulesMany(ids, fn, nil)
}

func (s *Store) updateSchedulesMany(ids []string, fn func(*HostSchedules, Host) (bool, error), committed func([]HostSchedules)) ([]HostSchedules, error) {
	var out []HostSchedules
	for start := 0; start < len(ids); start += schedulesBatch {
		chunk := ids[start:min(start+schedulesBatch, len(ids))]
		// The per-key locks, in key order (as every caller takes them),
		// keep UpdateSchedules of the same hosts out meanwhile.
		var unlocks []func()
		for _, id := range chunk {
			unlocks = append(unlocks, s.locks.lock(string(schedKey(id))))
		}
		var changed []HostSchedules
		err := s.updateUnsynced(func(txn *badger.Txn) error {
			changed = changed[:0]
			for _, id := range chunk {
				if err := validID(id); err != nil {
					return err
				}
				var h Host
				if _, err := getJSONRaw(txn, hostKey(id), &h); errors.Is(err, ErrNotFound) {
					continue
				} else if err != nil {
					return err
				}
				hs, st, err := readSchedules(txn, id)
				if err != nil {
					return err
				}
				ok, err := fn(&hs, h)
				if err != nil {
					return err
				}
				if !ok {
					continue
				}
				hs.HostID = id
				if err := writeSchedules(txn, hs, st); err != nil && !errors.Is(err, errUnchanged) {
					return err
				}
				changed = append(changed, hs)
			}
			if len(changed) == 0 {
				return errUnchanged
			}
			return nil
		})
		for i := len(unlocks) - 1; i >= 0; i-- {
			unlocks[i]()
		}
		if err != nil {
			// The batches before this one are committed: make them durable
			// too before the caller hears of them.
			_ = s.durable.wait()
			return out, fmt.Errorf("storage: update schedules of %d hosts: %w", len(chunk), err)
		}
		out = append(out, changed...)
		if committed != nil && len(changed) > 0 {
			committed(changed)
		}
	}
	// One sync for every batch: a sync per batch cost 40 fsyncs one after
	// another on a 10,000-host rollout, ~25 ms each on a busy disk.
	if err := s.durable.wait(); err != nil {
		return nil, fmt.Errorf("storage: update schedules: %w", err)
	}
	return out, nil
}

// Effective is the host's schedule set as its agent gets it: its own
// schedules, then those its policies give it.
func (hs HostSchedules) Effective() []schedules.Schedule {
	out := make([]schedules.Schedule, 0, len(hs.Schedules)+len(hs.Policy))
	out = append(out, hs.Schedules...)
	return append(out, hs.Policy...)
}

// PolicyRepo is the repository a policy's repository template made for one
// host, and the job that initialised it.
type PolicyRepo struct {
	RepoID    string `json:"repo_id"`
	InitJobID string `json:"init_job_id,omitempty"`
}

const policyRepoPrefix = "polrepo/"

func policyRepoKey(policyID, hostID string) []byte {
	return []byte(policyRepoPrefix + policyID + "/" + hostID)
}

// GetPolicyRepo returns the repository a policy made for a host
// (ErrNotFound: none yet).
func (s *Store) GetPolicyRepo(policyID, hostID string) (PolicyRepo, error) {
	var pr PolicyRepo
	if err := s.get(policyRepoKey(policyID, hostID), &pr); err != nil {
		return pr, fmt.Errorf("storage: policy repository %s/%s: %w", policyID, hostID, err)
	}
	return pr, nil
}

// PutPolicyRepo records the repository a policy made for a host.
func (s *Store) PutPolicyRepo(policyID, hostID string, pr PolicyRepo) error {
	if err := validID(policyID); err != nil {
		return fmt.Errorf("storage: put policy repository: %w", err)
	}
	if err := validID(hostID); err != nil {
		return fmt.Errorf("storage: put policy repository: %w", err)
	}
	return s.update(func(txn *badger.Txn) error { return setJSON(txn, policyRepoKey(policyID, hostID), pr) })
}
