package agent

import (
	"context"
	"encoding/json"
	"maps"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/wire"
)

// fakeEnrollConsole answers POST /api/v1/enroll with a credential for
// host-1 and keeps what the agent sent.
func fakeEnrollConsole(t *testing.T) (*httptest.Server, *wire.EnrollRequest) {
	t.Helper()
	got := &wire.EnrollRequest{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/api/v1/enroll" || json.NewDecoder(r.Body).Decode(got) != nil {
			http.Error(w, `{"error":"bad request"}`, http.StatusBadRequest)
			return
		}
		_ = json.NewEncoder(w).Encode(wire.EnrollResponse{HostID: "host-1", BrokerURL: "mqtt://127.0.0.1:1883", Username: "host-1", Password: "pw"})
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

// Enrolling with a key sends the key, the name and the labels (and no
// token), and writes the same config as a token does.
func TestEnrollWithKey(t *testing.T) {
	srv, got := fakeEnrollConsole(t)
	dir := t.TempDir()
	tokCfg, err := Enroll(context.Background(), EnrollOptions{ServerURL: srv.URL, Token: "rme_t", ConfigPath: filepath.Join(dir, "a", "agent.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if got.Token != "rme_t" || got.Key != "" || got.Name != "" || got.Labels != nil {
		t.Errorf("with a token the agent sent %+v", got)
	}
	*got = wire.EnrollRequest{}
	keyCfg, err := Enroll(context.Background(), EnrollOptions{ServerURL: srv.URL, Key: "rmk_k", Name: "web-1",
		Labels: map[string]string{"role": "web"}, ConfigPath: filepath.Join(dir, "b", "agent.yaml")})
	if err != nil {
		t.Fatal(err)
	}
	if got.Key != "rmk_k" || got.Token != "" || got.Name != "web-1" || !maps.Equal(got.Labels, map[string]string{"role": "web"}) || !strings.HasPrefix(got.PublicKey, "age1") {
		t.Errorf("with a key the agent sent %+v", got)
	}
	tokCfg.StateDir, keyCfg.StateDir = "", ""
	if !reflect.DeepEqual(tokCfg, keyCfg) {
		t.Errorf("configs differ:\n%+v\n%+v", tokCfg, keyCfg)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "a", "agent.yaml"))
	b, _ := os.ReadFile(filepath.Join(dir, "b", "agent.yaml"))
	if strings.ReplaceAll(string(a), filepath.Join(dir, "a"), "D") != strings.ReplaceAll(string(b), filepath.Join(dir, "b"), "D") {
		t.Errorf("config files differ:\n%s\n%s", a, b)
	}
}

// Exactly one credential; a name and labels with a key only; labels valid.
// Each is refused before anything is written or sent.
func TestEnrollRefusesBadOptions(t *testing.T) {
	srv, got := fakeEnrollConsole(t)
	for _, tc := range []struct {
		o    EnrollOptions
		want string
	}{
		{EnrollOptions{}, "exactly one"},
		{EnrollOptions{Token: "t", Key: "k"}, "exactly one"},
		{EnrollOptions{Token: "t", Name: "n"}, "go with an enrolment key"},
		{EnrollOptions{Token: "t", Labels: map[string]string{"a": "b"}}, "go with an enrolment key"},
		{EnrollOptions{Key: "k", Labels: map[string]string{"A": "b"}}, `label key "A"`},
	} {
		dir := t.TempDir()
		tc.o.ServerURL, tc.o.ConfigPath = srv.URL, filepath.Join(dir, "agent.yaml")
		if _, err := Enroll(context.Background(), tc.o); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.o, err, tc.want)
		}
		if entries, _ := os.ReadDir(dir); len(entries) != 0 {
			t.Errorf("%+v left %d files", tc.o, len(entries))
		}
	}
	if got.PublicKey != "" {
		t.Errorf("a refused enrolment was sent: %+v", got)
	}
}
