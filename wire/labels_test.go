package wire

import (
	"errors"
	"fmt"
	"maps"
	"strings"
	"testing"
)

func TestValidateLabels(t *testing.T) {
	many := map[string]string{}
	for i := range MaxLabels {
		many[fmt.Sprintf("k%02d", i)] = "v"
	}
	tooMany := maps.Clone(many)
	tooMany["one-more"] = ""
	for _, tc := range []struct {
		name   string
		labels map[string]string
		want   string // "" = valid
	}{
		{"none", nil, ""},
		{"typical", map[string]string{"role": "web", "env": "prod", "site": "berlin"}, ""},
		{"empty value", map[string]string{"backup": ""}, ""},
		{"punctuation and case in values", map[string]string{"a.b_c-d": "Web-1.prod_x", "9lives": "0"}, ""},
		{"longest key and value", map[string]string{strings.Repeat("k", 63): strings.Repeat("V", 63)}, ""},
		{"32 labels", many, ""},
		{"33 labels", tooMany, "at most 32 labels per host (33 given)"},
		{"empty key", map[string]string{"": "x"}, `label key "": use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"upper-case key", map[string]string{"Role": "web"}, `label key "Role": use 1-63 lower-case letters, digits, '.', '_' or '-', starting with a letter or digit`},
		{"key starting with a dot", map[string]string{".hidden": "x"}, `label key ".hidden": use 1-63`},
		{"key starting with a dash", map[string]string{"-x": "x"}, `label key "-x": use 1-63`},
		{"key with a slash", map[string]string{"example.org/role": "x"}, `label key "example.org/role": use 1-63`},
		{"key too long", map[string]string{strings.Repeat("k", 64): "x"}, `label key "` + strings.Repeat("k", 64) + `": use 1-63`},
		{"value with a space", map[string]string{"role": "web server"}, `label role: value "web server": use at most 63 letters, digits, '.', '_' or '-'`},
		{"value with a comma", map[string]string{"role": "a,b"}, `label role: value "a,b": use at most 63`},
		{"value with an equals sign", map[string]string{"role": "a=b"}, `label role: value "a=b": use at most 63`},
		{"value not ASCII", map[string]string{"site": "münchen"}, `label site: value "münchen": use at most 63`},
		{"value too long", map[string]string{"role": strings.Repeat("v", 64)}, `label role: value "` + strings.Repeat("v", 64) + `": use at most 63`},
		{"first bad key in order", map[string]string{"b": "x y", "a": "x y"}, `label a: value "x y"`},
	} {
		err := ValidateLabels(tc.labels)
		if tc.want == "" {
			if err != nil {
				t.Errorf("%s: refused: %v", tc.name, err)
			}
			continue
		}
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%s: error %v, want %q", tc.name, err, tc.want)
		}
		if !errors.Is(err, ErrBadLabels) {
			t.Errorf("%s: %v is not ErrBadLabels", tc.name, err)
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
		{"role=web", map[string]string{"role": "web"}, ""},
		{"role=web,env=prod,site=berlin", map[string]string{"role": "web", "env": "prod", "site": "berlin"}, ""},
		{" role=web , env=prod ,", map[string]string{"role": "web", "env": "prod"}, ""},
		{"backup=", map[string]string{"backup": ""}, ""},
		{"role", nil, `label "role": write it key=value`},
		{"role=web,role=db", nil, `label key "role" given twice`},
		{"Role=web", nil, `label key "Role": use 1-63`},
		{"=web", nil, `label key "": use 1-63`},
		{"role=a=b", nil, `label role: value "a=b"`},
		{"role=web server", nil, `label role: value "web server"`},
		{manyLabels(33), nil, "at most 32 labels per host"},
	} {
		got, err := ParseLabels(tc.in)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) || !errors.Is(err, ErrBadLabels) {
				t.Errorf("ParseLabels(%q): %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || !maps.Equal(got, tc.want) {
			t.Errorf("ParseLabels(%q) = %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if got := FormatLabels(map[string]string{"site": "berlin", "env": "prod", "role": "web"}); got != "env=prod,role=web,site=berlin" {
		t.Errorf("FormatLabels: %q", got)
	}
}

func manyLabels(n int) string {
	var parts []string
	for i := range n {
		parts = append(parts, fmt.Sprintf("k%d=v", i))
	}
	return strings.Join(parts, ",")
}

func TestLabelFilter(t *testing.T) {
	host := map[string]string{"role": "web", "env": "prod", "backup": ""}
	for _, tc := range []struct {
		terms []string
		match bool
		err   string
	}{
		{nil, true, ""},
		{[]string{"role=web"}, true, ""},
		{[]string{"role=web", "env=prod"}, true, ""},
		{[]string{"role=web", "env=dev"}, false, ""},
		{[]string{"role=db"}, false, ""},
		{[]string{"role"}, true, ""},
		{[]string{"site"}, false, ""},
		{[]string{"backup="}, true, ""},
		{[]string{"backup"}, true, ""},
		{[]string{"role="}, false, ""},
		{[]string{"Role=web"}, false, `label key "Role": use 1-63`},
		{[]string{"role=web server"}, false, `label role: value "web server"`},
		{[]string{""}, false, `label key "": use 1-63`},
	} {
		f, err := ParseLabelFilter(tc.terms)
		if tc.err != "" {
			if err == nil || !strings.HasPrefix(err.Error(), tc.err) {
				t.Errorf("%v: %v, want %q", tc.terms, err, tc.err)
			}
			continue
		}
		if err != nil {
			t.Errorf("%v: %v", tc.terms, err)
			continue
		}
		if got := f.Matches(host); got != tc.match {
			t.Errorf("%v matches %v: %v, want %v", tc.terms, host, got, tc.match)
		}
	}
	f, err := ParseLabelFilter([]string{"role=web", " role=web", "env"})
	if err != nil || strings.Join(f.Strings(), "&") != "role=web&env" {
		t.Errorf("duplicates: %v %v, want role=web&env", f.Strings(), err)
	}
	if !f.Has(LabelTerm{Key: "env", AnyValue: true}) || f.Has(LabelTerm{Key: "env", Value: ""}) {
		t.Error("Has tells a key-only term from an empty value")
	}
	if _, err := ParseLabelFilter(strings.Split(manyLabels(33), ",")); err == nil {
		t.Error("33 distinct conditions accepted")
	}
}

// Whatever ParseLabels accepts is valid and survives FormatLabels.
func FuzzParseLabels(f *testing.F) {
	for _, s := range []string{"", "role=web", "role=web,env=prod,site=berlin", " a=b , c= ,", "role", "role=a=b", "Role=x", "k=v,k=w"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		m, err := ParseLabels(s)
		if err != nil {
			if !errors.Is(err, ErrBadLabels) {
				t.Fatalf("%q: error %v is not ErrBadLabels", s, err)
			}
			return
		}
		if err := ValidateLabels(m); err != nil {
			t.Fatalf("%q parsed to %v, which ValidateLabels refuses: %v", s, m, err)
		}
		back, err := ParseLabels(FormatLabels(m))
		if err != nil || !maps.Equal(back, m) {
			t.Fatalf("%q → %v → %q → %v, %v", s, m, FormatLabels(m), back, err)
		}
	})
}
