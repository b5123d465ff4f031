package wire

import (
	"errors"
	"fmt"
	"sort"
	"strings"
)

// Labels are a host's key=value pairs (role=web, env=prod, site=berlin):
// what policies select hosts by, what enrolment keys give a new host, what
// the dashboard filters on. Their rules are here, once, for the console
// (the API, enrolment keys, policy selectors) and the agent (its
// --labels k=v,… flag) alike. Kubernetes-like, lower-case keys:
//
//	key:   1-63 of a-z 0-9 . _ -, starting with a letter or digit
//	value: 0-63 of A-Z a-z 0-9 . _ -
//	at most 32 labels per host
const (
	MaxLabels        = 32
	MaxLabelKeyLen   = 63
	MaxLabelValueLen = 63
)

// ErrBadLabels is matched (errors.Is) by every error of the label checks
// below. Their text is a plain message for whoever typed the labels.
var ErrBadLabels = errors.New("wire: bad labels")

type labelsError string

func (e labelsError) Error() string        { return string(e) }
func (e labelsError) Is(target error) bool { return target == ErrBadLabels }

func badLabels(format string, a ...any) error { return labelsError(fmt.Sprintf(format, a...)) }

// ValidLabelKey reports whether k may be a label's key.
func ValidLabelKey(k string) bool {
	if len(k) == 0 || len(k) > MaxLabelKeyLen || !lowerOrDigit(k[0]) {
		return false
	}
	for i := 1; i < len(k); i++ {
		if c := k[i]; !lowerOrDigit(c) && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

// ValidLabelValue reports whether v may be a label's value (empty may).
func ValidLabelValue(v string) bool {
	if len(v) > MaxLabelValueLen {
		return false
	}
	for i := 0; i < len(v); i++ {
		c := v[i]
		if !lowerOrDigit(c) && !(c >= 'A' && c <= 'Z') && c != '.' && c != '_' && c != '-' {
			return false
		}
	}
	return true
}

func lowerOrDigit(c byte) bool { return c >= 'a' && c <= 'z' || c >= '0' && c <= '9' }

func checkLabelKey(k string) error {
	if !ValidLabelKey(k) {
		return badLabels("label key %q: use 1-%d lower-case letters, digits, '.', '_' or '-', starting with a letter or digit", k, MaxLabelKeyLen)
	}
	return nil
}

func checkLabelValue(k, v string) error {
	if !ValidLabelValue(v) {
		return badLabels("label %s: value %q: use at most %d letters, digits, '.', '_' or '-'", k, v, MaxLabelValueLen)
	}
	return nil
}

// ValidateLabels checks a host's whole set of labels; the first fault (in
// key order) is the error.
func ValidateLabels(labels map[string]string) error {
	if len(labels) > MaxLabels {
		return badLabels("at most %d labels per host (%d given)", MaxLabels, len(labels))
	}
	for _, k := range sortedKeys(labels) {
		if err := checkLabelKey(k); err != nil {
			return err
		}
		if err := checkLabelValue(k, labels[k]); err != nil {
			return err
		}
	}
	return nil
}

// ParseLabels reads labels written "k=v,k2=v2" (as the agent's --labels
// flag takes them): spaces around an item are ignored, so are empty items;
// a key given twice is refused. The result is valid (ValidateLabels); ""
// is no labels.
func ParseLabels(s string) (map[string]string, error) {
	out := map[string]string{}
	for _, item := range strings.Split(s, ",") {
		item = strings.TrimSpace(item)
		if item == "" {
			continue
		}
		k, v, ok := strings.Cut(item, "=")
		if !ok {
			return nil, badLabels("label %q: write it key=value", item)
		}
		if _, dup := out[k]; dup {
			return nil, badLabels("label key %q given twice", k)
		}
		if err := checkLabelKey(k); err != nil {
			return nil, err
		}
		if err := checkLabelValue(k, v); err != nil {
			return nil, err
		}
		out[k] = v
		if len(out) > MaxLabels {
			return nil, badLabels("at most %d labels per host", MaxLabels)
		}
	}
	return out, nil
}

// FormatLabels writes labels as ParseLabels reads them, in key order.
func FormatLabels(labels map[string]string) string {
	var b strings.Builder
	for i, k := range sortedKeys(labels) {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(k + "=" + labels[k])
	}
	return b.String()
}

func sortedKeys(m map[string]string) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// LabelTerm is one condition on a host's labels: written "key=value" (the
// key with that value) or "key" (the key, with any value).
type LabelTerm struct {
	Key, Value string
	AnyValue   bool
}

// ParseLabelTerm reads one "key=value" or "key" condition.
func ParseLabelTerm(s string) (LabelTerm, error) {
	k, v, ok := strings.Cut(strings.TrimSpace(s), "=")
	if err := checkLabelKey(k); err != nil {
		return LabelTerm{}, err
	}
	if !ok {
		return LabelTerm{Key: k, AnyValue: true}, nil
	}
	if err := checkLabelValue(k, v); err != nil {
		return LabelTerm{}, err
	}
	return LabelTerm{Key: k, Value: v}, nil
}

// Matches reports whether labels meet the condition.
func (t LabelTerm) Matches(labels map[string]string) bool {
	v, ok := labels[t.Key]
	return ok && (t.AnyValue || v == t.Value)
}

func (t LabelTerm) String() string {
	if t.AnyValue {
		return t.Key
	}
	return t.Key + "=" + t.Value
}

// LabelFilter is a list of conditions that must all hold (the API's and
// the dashboard's repeated ?label=).
type LabelFilter []LabelTerm

// MaxLabelTerms bounds a filter: more distinct keys than a host may carry
// match nothing anyway.
const MaxLabelTerms = MaxLabels

// ParseLabelFilter reads each term (ParseLabelTerm); a term given twice
// counts once.
func ParseLabelFilter(terms []string) (LabelFilter, error) {
	var f LabelFilter
	seen := map[LabelTerm]bool{}
	for _, s := range terms {
		t, err := ParseLabelTerm(s)
		if err != nil {
			return nil, err
		}
		if seen[t] {
			continue
		}
		seen[t] = true
		f = append(f, t)
		if len(f) > MaxLabelTerms {
			return nil, badLabels("at most %d label conditions", MaxLabelTerms)
		}
	}
	return f, nil
}

// Matches reports whether labels meet every condition (an empty filter
// matches every host).
func (f LabelFilter) Matches(labels map[string]string) bool {
	for _, t := range f {
		if !t.Matches(labels) {
			return false
		}
	}
	return true
}

// Has reports whether the filter holds the term.
func (f LabelFilter) Has(t LabelTerm) bool {
	for _, x := range f {
		if x == t {
			return true
		}
	}
	return false
}

// Strings writes each term as ParseLabelTerm reads it.
func (f LabelFilter) Strings() []string {
	out := make([]string, len(f))
	for i, t := range f {
		out[i] = t.String()
	}
	return out
}
