package wire

import (
	"errors"
	"maps"
	"strconv"
	"strings"
	"testing"
)

func TestValidateLabels(t *testing.T) {
	many := map[string]string{}
	for i := range MaxLabels + 1 {
		many["k"+strconv.Itoa(i)] = "v"
	}
	for _, tc := range []struct {
		labels map[string]string
		want   string // "" for valid
	}{
		{nil, ""},
		{map[string]string{"role": "web", "env": "prod", "site.zone_1-a": "Berlin-1.a_b", "9lives": ""}, ""},
		{map[string]string{strings.Repeat("k", 63): strings.Repeat("V", 63)}, ""},
		{map[string]string{"": "x"}, `label key "": 1 to 63 characters`},
		{map[string]string{strings.Repeat("k", 64): "x"}, "1 to 63 characters"},
		{map[string]string{"Role": "web"}, "must start with a lowercase letter or a digit"},
		{map[string]string{"-role": "web"}, "must start with a lowercase letter or a digit"},
		{map[string]string{"ro le": "web"}, "only lowercase letters, digits"},
		{map[string]string{"roLe": "web"}, "only lowercase letters, digits"},
		{map[string]string{"role": strings.Repeat("v", 64)}, "longer than 63"},
		{map[string]string{"role": "web server"}, `label role="web server": the value may hold only`},
		{map[string]string{"role": "wéb"}, "the value may hold only"},
		{map[string]string{"role": "a=b"}, "the value may hold only"},
		{many, "at most 32, got 33"},
	} {
		err := ValidateLabels(tc.labels)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%v: %v", tc.labels, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrInvalid)):
			t.Errorf("%v: %v, want %q", tc.labels, err, tc.want)
		}
	}
}

func TestParseLabels(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want map[string]string
		err  string
	}{
		{"", map[string]string{}, ""},
		{"  ", map[string]string{}, ""},
		{"role=web", map[string]string{"role": "web"}, ""},
		{"role=web, env=prod ,empty=", map[string]string{"role": "web", "env": "prod", "empty": ""}, ""},
		{"role", nil, `label "role": write key=value`},
		{"role=web,", nil, `label "": write key=value`},
		{"role=web,role=db", nil, "label role is given twice"},
		{"Role=web", nil, "must start with a lowercase letter"},
		{"role=a=b", nil, "the value may hold only"},
		{strings.Repeat("a", 10000), nil, "at most"},
	} {
		got, err := ParseLabels(tc.in)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("ParseLabels(%q) = %v, %v; want error %q", tc.in, got, err, tc.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("ParseLabels(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
}

// Whatever ParseLabels accepts is valid, and written back as k=v,… it
// parses to the same labels.
func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{"role=web,env=prod", "a=", " x = y ", "a=b,a=c", "Role=x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		got, err := ParseLabels(s)
		if err != nil {
			return
		}
		if err := ValidateLabels(got); err != nil {
			t.Fatalf("ParseLabels(%q) accepted invalid labels: %v", s, err)
		}
		var parts []string
		for k, v := range got {
			parts = append(parts, k+"="+v)
		}
		again, err := ParseLabels(strings.Join(parts, ","))
		if err != nil || !maps.Equal(again, got) {
			t.Fatalf("%q → %v → %v, %v", s, got, again, err)
		}
	})
}
