package view

import (
	"sort"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// EnrollKey is an enrolment key as listed: never the key itself (only its
// hash is kept). Usable says whether it can make a host now.
type EnrollKey struct {
	ID               string            `json:"id"`
	Name             string            `json:"name"`
	Labels           map[string]string `json:"labels"`
	AllowAgentLabels bool              `json:"allow_agent_labels"`
	MaxUses          int               `json:"max_uses"`
	Uses             int               `json:"uses"`
	CreatedBy        string            `json:"created_by"`
	CreatedAt        time.Time         `json:"created_at"`
	ExpiresAt        time.Time         `json:"expires_at"`
	LastUsedAt       time.Time         `json:"last_used_at,omitzero"`
	Expired          bool              `json:"expired"`
	UsedUp           bool              `json:"used_up"`
	Usable           bool              `json:"usable"`
}

// EnrollKeyOf shows an enrolment key as it stands at now.
func EnrollKeyOf(k storage.EnrollKey, now time.Time) EnrollKey {
	v := EnrollKey{
		ID: k.ID, Name: k.Name, Labels: k.Labels, AllowAgentLabels: k.AllowAgentLabels, MaxUses: k.MaxUses, Uses: k.Uses,
		CreatedBy: k.CreatedBy, CreatedAt: k.CreatedAt, ExpiresAt: k.ExpiresAt, LastUsedAt: k.LastUsedAt,
		Expired: !now.Before(k.ExpiresAt), UsedUp: k.MaxUses > 0 && k.Uses >= k.MaxUses,
	}
	if v.Labels == nil {
		v.Labels = map[string]string{}
	}
	v.Usable = !v.Expired && !v.UsedUp
	return v
}

// EnrollKeysOf shows enrolment keys, the newest first.
func EnrollKeysOf(keys []storage.EnrollKey, now time.Time) []EnrollKey {
	out := make([]EnrollKey, 0, len(keys))
	for _, k := range keys {
		out = append(out, EnrollKeyOf(k, now))
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].CreatedAt.After(out[j].CreatedAt) })
	return out
}
