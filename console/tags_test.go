package console

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// A backup tag with a comma would be split by restic and is refused by
// the agent's runner: the console refuses it at once, for a job and for a
// schedule, with the reason. A tag filter "a,b" (forget, snapshots: both
// tags) stays allowed.
func TestTagWithACommaRefused(t *testing.T) {
	c, st, _ := newTestConsole(t)
	enrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(storage.User{Name: "op", Role: auth.RoleOperator, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAPIToken(token.Hash("rmt_tags_op"), storage.APIToken{ID: "tok-op", Name: "op", User: "op"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	const msg = `tag "daily,weekly" contains a comma, which restic reads as a separator between tags: give each tag as its own entry`
	for _, tc := range []struct{ method, path, body, want string }{
		{"POST", "/api/v1/hosts/host-a/jobs", `{"kind":"backup","repo_id":"repo-1","args":{"paths":["/etc"],"tags":["daily,weekly"]}}`, msg},
		{"PUT", "/api/v1/hosts/host-a/schedules", `[{"name":"n","kind":"backup","cron":"0 2 * * *","enabled":true,"repo_id":"repo-1","paths":["/etc"],"tags":["daily,weekly"]}]`,
			`schedule "n": ` + msg},
		{"POST", "/api/v1/hosts/host-a/jobs", `{"kind":"snapshots","repo_id":"repo-1","args":{"tags":["a,b"]}}`, ""},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer rmt_tags_op")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if tc.want == "" {
			if resp.StatusCode >= 300 {
				t.Errorf("%s %s: %d %q, want it accepted", tc.method, tc.path, resp.StatusCode, out.Error)
			}
			continue
		}
		if resp.StatusCode != http.StatusBadRequest || out.Error != tc.want {
			t.Errorf("%s %s: %d %q, want 400 %q", tc.method, tc.path, resp.StatusCode, out.Error, tc.want)
		}
	}
}
