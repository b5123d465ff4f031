package main

import (
	"maps"
	"strings"
	"testing"
)

// enroll takes exactly one of --token and --key (the environment only when
// neither flag is given), --name and --labels with a key only, and labels
// as k=v,….
func TestEnrollFlags(t *testing.T) {
	env := func(kv ...string) func(string) string {
		m := map[string]string{}
		for i := 0; i+1 < len(kv); i += 2 {
			m[kv[i]] = kv[i+1]
		}
		return func(k string) string { return m[k] }
	}
	base := []string{"--server", "https://c", "--config", "/x/agent.yaml"}
	o, err := enrollOptions(append(base, "--key", "rmk_k", "--name", "web-1", "--labels", "role=web, env=prod"), env())
	if err != nil || o.Key != "rmk_k" || o.Token != "" || o.Name != "web-1" || !maps.Equal(o.Labels, map[string]string{"role": "web", "env": "prod"}) || o.ConfigPath != "/x/agent.yaml" {
		t.Errorf("with a key: %+v %v", o, err)
	}
	if o, err := enrollOptions(append(base, "--token", "rme_t"), env("RM_ENROLL_KEY", "rmk_env")); err != nil || o.Token != "rme_t" || o.Key != "" || o.Labels != nil {
		t.Errorf("a token with a key in the environment: %+v %v", o, err)
	}
	if o, err := enrollOptions(base, env("RM_ENROLL_KEY", "rmk_env")); err != nil || o.Key != "rmk_env" {
		t.Errorf("RM_ENROLL_KEY: %+v %v", o, err)
	}
	if o, err := enrollOptions(base, env("RM_ENROLL_TOKEN", "rme_env")); err != nil || o.Token != "rme_env" {
		t.Errorf("RM_ENROLL_TOKEN: %+v %v", o, err)
	}
	for _, tc := range []struct {
		args []string
		env  func(string) string
		want string
	}{
		{base, env(), "--token or --key is required"},
		{append(base, "--token", "t", "--key", "k"), env(), "not both"},
		{base, env("RM_ENROLL_TOKEN", "t", "RM_ENROLL_KEY", "k"), "not both"},
		{append(base, "--token", "t", "--name", "n"), env(), "--name and --labels go with --key"},
		{append(base, "--token", "t", "--labels", "a=b"), env(), "--name and --labels go with --key"},
		{append(base, "--key", "k", "--labels", "role"), env(), `--labels: label "role": write it key=value`},
		{append(base, "--key", "k", "--labels", "Role=web"), env(), "use 1-63 lower-case letters"},
		{append(base, "--key", "k", "extra"), env(), `unexpected argument "extra"`},
	} {
		if _, err := enrollOptions(tc.args, tc.env); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: %v, want %q", tc.args, err, tc.want)
		}
	}
}
