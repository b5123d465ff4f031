package console

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
)

// BenchmarkPolicyEdit is the console's side of the fleet simulator's policy
// scenario without agents: one PUT /policies/{id} that changes the
// schedule of every one of 10,000 hosts (stored, and the desired state
// published to a recorder). Run it with
//
//	go test ./console -run '^$' -bench PolicyEdit -benchtime 5x
//
// and read ms/op and µs/host: the whole edit, and its share per host.
func BenchmarkPolicyEdit(b *testing.B) {
	const hosts = 10000
	st := teststore.Open(b)
	rec := &teststore.Recorder{}
	c, err := New(Options{Store: st, Publisher: rec})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(c.Close)
	if err := st.CreateUser(storage.User{Name: "admin", Role: "admin", CreatedAt: time.Now()}); err != nil {
		b.Fatal(err)
	}
	if err := st.PutAPIToken(token.Hash("rmt_bench"), storage.APIToken{ID: "tok-bench", Name: "bench", User: "admin"}); err != nil {
		b.Fatal(err)
	}
	_, rcpt, _ := seal.NewIdentity()
	for i := range hosts {
		id := fmt.Sprintf("host-%05d", i)
		if err := st.CreateHost(storage.Host{ID: id, Name: id, Enrolled: true, PublicKey: rcpt, Labels: map[string]string{"fleet": "sim"}, CreatedAt: time.Now()}); err != nil {
			b.Fatal(err)
		}
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		b.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{b, srv}
	body := func(schedID, cron string) string {
		return `{"name":"fleet","selector":{"fleet":"sim"},"repo_id":"repo-1","schedules":[{"id":"` + schedID + `","name":"nightly","kind":"backup","cron":"` + cron + `","enabled":true,"paths":["/data"]}]}`
	}
	code, out := api.do("rmt_bench", "POST", "/api/v1/policies", strings.Replace(body("", "0 1 * * *"), `"id":"",`, "", 1))
	if code != 201 || out["changed"].(float64) != hosts {
		b.Fatalf("create: %d %v", code, out)
	}
	id := out["id"].(string)
	schedID := out["schedules"].([]any)[0].(map[string]any)["id"].(string)
	b.ResetTimer()
	for i := range b.N {
		code, out := api.do("rmt_bench", "PUT", "/api/v1/policies/"+id, body(schedID, fmt.Sprintf("%d 2 * * *", i%60)))
		if code != 200 || out["changed"].(float64) != hosts {
			b.Fatalf("edit: %d %v", code, out)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N*hosts), "µs/host")
}
