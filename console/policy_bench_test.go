package console

import (
	"fmt"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
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
	load0 := benchout.LoadAvg()
	b.ResetTimer()
	for i := range b.N {
		code, out := api.do("rmt_bench", "PUT", "/api/v1/policies/"+id, body(schedID, fmt.Sprintf("%d 2 * * *", i%60)))
		if code != 200 || out["changed"].(float64) != hosts {
			b.Fatalf("edit: %d %v", code, out)
		}
	}
	perHost := float64(b.Elapsed().Microseconds()) / float64(b.N*hosts)
	b.ReportMetric(perHost, "µs/host")
	// No target of its own: the simulator's policy edit (≤ 3 s at 10,000
	// agents) is the whole edit, broker and agents included; this is the
	// console's share of it, read beside it.
	fig := func(id, what string, v float64, unit string) benchout.Figure {
		return benchout.Figure{ID: "policyedit." + id, Group: benchout.GroupPolicies, What: what, Value: v, Unit: unit,
			Load: benchout.LoadSince(load0), Command: benchout.GoTest("./console", "BenchmarkPolicyEdit", fmt.Sprintf("%dx", b.N))}
	}
	if err := benchout.Write("policyedit", []benchout.Figure{
		fig("edit_ms", fmt.Sprintf("policy edit over %d hosts, console only (store + publish to a recorder), mean of %d", hosts, b.N),
			float64(b.Elapsed().Microseconds())/1000/float64(b.N), "ms"),
		fig("us_per_host", "policy edit, console only: per host", perHost, "µs"),
	}); err != nil {
		b.Error(err)
	}
}
