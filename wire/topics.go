// Package wire is the MQTT contract shared by the agent, the console and any
// integration: topic names under restic-manager/v1 and the JSON payloads
// carried on them. It imports nothing from the project.
package wire

import (
	"errors"
	"fmt"
	"strings"
)

// Prefix is the root of every topic of this contract.
const Prefix = "restic-manager/v1"

// Topic kinds, the part of a topic after hosts/{host}/.
const (
	KindStatus            = "status"
	KindCommands          = "commands"
	KindProgress          = "progress" // jobs/{job}/progress
	KindResult            = "result"   // jobs/{job}/result
	KindSchedulesDesired  = "schedules/desired"
	KindSchedulesReported = "schedules/reported"
	KindFires             = "fires"
	KindHealth            = "health"
	KindRPC               = "rpc"
	KindRPCResponse       = "rpc/response"
)

// ErrTopic is returned for topics outside the contract.
var ErrTopic = errors.New("wire: not a restic-manager topic")

// ValidID reports whether s can be a host or job ID: 1–64 characters of
// [A-Za-z0-9_-]. IDs become topic levels, so anything that could be a
// wildcard or a separator is excluded.
func ValidID(s string) bool {
	if len(s) == 0 || len(s) > 64 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '-', c == '_':
		default:
			return false
		}
	}
	return true
}

// HostIDPrefix starts every host ID, which is also the host agent's MQTT
// username and client ID. Other accounts (the console, integrations) never
// start with it, so the broker tells an agent by its name.
const HostIDPrefix = "host-"

// HostPrefix is the subtree a host's agent may use: hosts/{host}/.
func HostPrefix(host string) string { return Prefix + "/hosts/" + host + "/" }

func StatusTopic(host string) string           { return HostPrefix(host) + KindStatus }
func CommandsTopic(host string) string         { return HostPrefix(host) + KindCommands }
func SchedulesDesiredTopic(host string) string { return HostPrefix(host) + KindSchedulesDesired }

// IsSchedulesDesiredTopic tells a host's desired-schedules topic (the
// broker keeps those messages in memory only: the console republishes them
// at start, from its store).
func IsSchedulesDesiredTopic(topic string) bool {
	return strings.HasPrefix(topic, Prefix+"/hosts/") && strings.HasSuffix(topic, "/"+KindSchedulesDesired)
}
func SchedulesReportedTopic(host string) string { return HostPrefix(host) + KindSchedulesReported }
func FiresTopic(host string) string             { return HostPrefix(host) + KindFires }
func HealthTopic(host string) string            { return HostPrefix(host) + KindHealth }
func RPCTopic(host string) string               { return HostPrefix(host) + KindRPC }
func RPCResponseTopic(host string) string       { return HostPrefix(host) + KindRPCResponse }
func ProgressTopic(host, job string) string {
	return HostPrefix(host) + "jobs/" + job + "/" + KindProgress
}
func ResultTopic(host, job string) string { return HostPrefix(host) + "jobs/" + job + "/" + KindResult }

// AlertTopic is restic-manager/v1/alerts/{alert}: retained while the alert
// fires, cleared (empty retained payload) when it resolves.
func AlertTopic(alertID string) string { return Prefix + "/alerts/" + alertID }

// Topic is a parsed contract topic.
type Topic struct {
	Host string
	Kind string // one of the Kind* constants
	Job  string // set for progress and result
}

// String rebuilds the topic name.
func (t Topic) String() string {
	switch t.Kind {
	case KindProgress, KindResult, KindOutput:
		return HostPrefix(t.Host) + "jobs/" + t.Job + "/" + t.Kind
	}
	return HostPrefix(t.Host) + t.Kind
}

// FromAgent reports whether agents publish on this kind of topic.
func (t Topic) FromAgent() bool {
	switch t.Kind {
	case KindStatus, KindProgress, KindResult, KindOutput, KindSchedulesReported, KindFires, KindRPCResponse:
		return true
	}
	return false
}

// ParseTopic splits a topic name of the contract. Anything else (other
// prefixes, unknown kinds, invalid IDs, wildcards) is ErrTopic.
func ParseTopic(name string) (Topic, error) {
	rest, ok := strings.CutPrefix(name, Prefix+"/hosts/")
	if !ok {
		return Topic{}, fmt.Errorf("%w: %q", ErrTopic, name)
	}
	host, rest, ok := strings.Cut(rest, "/")
	if !ok || !ValidID(host) {
		return Topic{}, fmt.Errorf("%w: bad host in %q", ErrTopic, name)
	}
	switch rest {
	case KindStatus, KindCommands, KindSchedulesDesired, KindSchedulesReported, KindFires, KindHealth, KindRPC, KindRPCResponse:
		return Topic{Host: host, Kind: rest}, nil
	}
	if jobPart, ok := strings.CutPrefix(rest, "jobs/"); ok {
		job, kind, ok := strings.Cut(jobPart, "/")
		if ok && ValidID(job) && (kind == KindProgress || kind == KindResult || kind == KindOutput) {
			return Topic{Host: host, Kind: kind, Job: job}, nil
		}
	}
	return Topic{}, fmt.Errorf("%w: unknown kind in %q", ErrTopic, name)
}
