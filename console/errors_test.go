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

// A refused input answers 400 with the reason alone, however deep in the
// store it was refused: never "storage: update host …: bad request: …".
func TestInputErrorsReachTheClientPlain(t *testing.T) {
	c, st, _ := newTestConsole(t)
	enrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b", "host-w"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-2", Name: "r2"}, storage.RepoSecrets{URL: "/srv/r2", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(storage.User{Name: "op", Role: auth.RoleOperator, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAPIToken(token.Hash("rmt_err_op"), storage.APIToken{ID: "tok-op", Name: "op", User: "op"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	for _, tc := range []struct{ method, path, body, want string }{
		{"PATCH", "/api/v1/hosts/host-a", `{"name":"  "}`, "name must be 1-200 characters"},
		{"PUT", "/api/v1/hosts/host-a/schedules", `[{"id":"sch-nope","name":"n","kind":"backup","cron":"0 2 * * *","enabled":true,"repo_id":"repo-1","paths":["/etc"]}]`,
			`schedule "n": unknown id "sch-nope" (omit the id to create a schedule)`},
		{"PUT", "/api/v1/hosts/host-a/schedules", `[{"name":"n","kind":"backup","cron":"0 2 * * *","enabled":true,"repo_id":"repo-2","paths":["/etc"]}]`,
			`schedule "n": host host-a is not bound to repository r2 (repo-2): an admin binds it`},
		{"POST", "/api/v1/hosts/host-a/jobs", `{"kind":"backup","repo_id":"repo-1","args":{"paths":["-rf"]}}`, `"-rf" starts with '-' and would be read as an option`},
		{"POST", "/api/v1/hosts/host-a/jobs", `{"kind":"rm","repo_id":"repo-1"}`, `job kind "rm" is not one of`},
		{"POST", "/api/v1/hosts", `{"nme":"x"}`, `request body: json: unknown field "nme"`},
	} {
		req, _ := http.NewRequest(tc.method, srv.URL+tc.path, strings.NewReader(tc.body))
		req.Header.Set("Authorization", "Bearer rmt_err_op")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		var out struct{ Error string }
		_ = json.NewDecoder(resp.Body).Decode(&out)
		resp.Body.Close()
		if resp.StatusCode != http.StatusBadRequest || !strings.HasPrefix(out.Error, tc.want) {
			t.Errorf("%s %s: %d %q, want 400 %q", tc.method, tc.path, resp.StatusCode, out.Error, tc.want)
		}
		if strings.Contains(out.Error, "storage") || strings.Contains(out.Error, "bad request") || strings.Contains(out.Error, "wire:") {
			t.Errorf("%s %s: the answer %q leaks an internal prefix", tc.method, tc.path, out.Error)
		}
	}
}
