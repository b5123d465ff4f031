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

// apiUser makes a user with an API token.
func apiUser(t *testing.T, st *storage.Store, name, role string) string {
	t.Helper()
	if err := st.CreateUser(storage.User{Name: name, Role: role, CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tok := "rmt_" + name
	if err := st.PutAPIToken(token.Hash(tok), storage.APIToken{ID: "tok-" + name, Name: name, User: name}); err != nil {
		t.Fatal(err)
	}
	return tok
}

// queuedJob creates a job that stays unfinished (its agent never answers).
func queuedJob(t *testing.T, srv *httptest.Server, tok string) string {
	t.Helper()
	req, _ := http.NewRequest("POST", srv.URL+"/api/v1/hosts/host-a/jobs", strings.NewReader(`{"kind":"backup","repo_id":"repo-1","args":{"paths":["/etc"]}}`))
	req.Header.Set("Authorization", "Bearer "+tok)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var j struct {
		ID string `json:"job_id"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&j); err != nil || resp.StatusCode >= 300 || j.ID == "" {
		t.Fatalf("create job: %d %v", resp.StatusCode, err)
	}
	return j.ID
}

// Event streams are capped per user and in all: past a cap the stream is
// refused with 429; closing one frees its place.
func TestEventStreamsCapped(t *testing.T) {
	c, st, _ := newTestConsole(t, func(o *Options) { o.SSEPerUser, o.SSETotal = 2, 3 })
	enrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a", "host-b"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	alice, bob := apiUser(t, st, "alice", auth.RoleOperator), apiUser(t, st, "bob", auth.RoleViewer)
	srv := httptest.NewServer(c.Handler(nil))
	// Closed after the streams (cleanups run last first): Close waits for
	// every handler, and a stream's ends when its client goes.
	t.Cleanup(srv.Close)
	job := queuedJob(t, srv, alice)

	open := func(tok string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", srv.URL+"/api/v1/jobs/"+job+"/events", nil)
		req.Header.Set("Authorization", "Bearer "+tok)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { resp.Body.Close() })
		return resp
	}
	a1, a2 := open(alice), open(alice)
	if a1.StatusCode != 200 || a2.StatusCode != 200 {
		t.Fatalf("first two streams: %d %d", a1.StatusCode, a2.StatusCode)
	}
	if r := open(alice); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a user's third stream: %d, want 429", r.StatusCode)
	}
	if r := open(bob); r.StatusCode != 200 {
		t.Errorf("another user's stream: %d, want 200", r.StatusCode)
	}
	if r := open(bob); r.StatusCode != http.StatusTooManyRequests {
		t.Errorf("a stream past the total: %d, want 429", r.StatusCode)
	}
	// A closed stream gives its place back (once the server sees it).
	a1.Body.Close()
	deadline := time.Now().Add(10 * time.Second)
	for {
		r := open(alice)
		if r.StatusCode == 200 {
			break
		}
		r.Body.Close()
		if time.Now().After(deadline) {
			t.Fatal("a closed stream's place was not given back")
		}
		time.Sleep(20 * time.Millisecond)
	}
}
