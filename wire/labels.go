package wire

import (
	"fmt"
	"sort"
	"strings"
)

// Bounds of a host's labels (key=value, such as role=web or env=prod): a
// policy selects hosts by them, an enrolment key gives them, an agent may
// ask for its own at enrolment.
const (
	MaxLabels        = 32
	MaxLabelKey      = 63
	MaxLabelValue    = 63
	maxLabelsTextLen = MaxLabels * (MaxLabelKey + 1 + MaxLabelValue + 1)
)

// ValidateLabels checks a set of labels: at most MaxLabels; keys of 1 to 63
// characters from [a-z0-9._-] starting with a letter or a digit; values of
// 0 to 63 characters from [A-Za-z0-9._-]. The error names the first bad
// label (in key order, so the same set always gives the same message).
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return fmt.Errorf("%w: labels: at most %d, got %d", ErrInvalid, MaxLabels, len(labels))
	}
	keys := make([]string, 0, len(labels))
	for k := range labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if err := checkLabelKey(k); err != nil {
			return err
		}
		if err := checkLabelValue(k, labels[k]); err != nil {
			return err
		}
	}
	return nil
}

func checkLabelKey(k string) error {
	if k == "" || len(k) > MaxLabelKey {
		return fmt.Errorf("%w: label key %q: 1 to %d characters", ErrInvalid, k, MaxLabelKey)
	}
	if !lowerOrDigit(k[0]) {
		return fmt.Errorf("%w: label key %q: must start with a lowercase letter or a digit", ErrInvalid, k)
	}
	for i := 0; i < len(k); i++ {
		if c := k[i]; !lowerOrDigit(c) && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%w: label key %q: only lowercase letters, digits, '.', '_' and '-'", ErrInvalid, k)
		}
	}
	return nil
}

func checkLabelValue(k, v string) error {
	if len(v) > MaxLabelValue {
		return fmt.Errorf("%w: label %s: the value is longer than %d characters", ErrInvalid, k, MaxLabelValue)
	}
	for i := 0; i < len(v); i++ {
		if c := v[i]; !lowerOrDigit(c) && (c < 'A' || c > 'Z') && c != '.' && c != '_' && c != '-' {
			return fmt.Errorf("%w: label %s=%q: the value may hold only letters, digits, '.', '_' and '-'", ErrInvalid, k, v)
		}
	}
	return nil
}

func lowerOrDigit(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

// ParseLabels reads labels written as "k=v,k2=v2" (spaces around items are
// ignored; an empty string is no labels) and validates them. A key given
// twice is an error rather than a silent choice.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	if len(s) > maxLabelsTextLen {
		return nil, fmt.Errorf("%w: labels: at most %d bytes", ErrInvalid, maxLabelsTextLen)
	}
	if strings.TrimSpace(s) == "" {
		return out, nil
	}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return nil, fmt.Errorf("%w: label %q: write key=value, separated by commas (e.g. role=web,env=prod)", ErrInvalid, item)
		}
		if _, dup := out[k]; dup {
			return nil, fmt.Errorf("%w: label %s is given twice", ErrInvalid, k)
		}
		out[k] = v
	}
	if err := ValidateLabels(out); err != nil {
		return nil, err
	}
	return out, nil
}
