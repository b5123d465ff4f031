package console

import (
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/storage"
)

// A restore started with bandwidth limits carries them in its arguments;
// the job API and the job page say the limit in force, and say nothing for
// a job without one. Limits out of bounds are refused with the reason.
func TestRestoreLimitsShownOnTheJob(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a"}, HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	operator := "rmt_trust_operator"
	sid := strings.Repeat("ab", 32)

	code, out := api.do(operator, "POST", "/api/v1/restores", `{"repo_id":"repo-1","snapshot_id":"`+sid+`","target_host_id":"host-a","target_path":"/tmp/r","limit_download_kib":5120}`)
	if code != http.StatusCreated {
		t.Fatalf("restore with a limit: %d %v", code, out)
	}
	id := out["job_id"].(string)
	code, j := api.do(operator, "GET", "/api/v1/jobs/"+id, "")
	bw, _ := j["bandwidth"].(map[string]any)
	if code != http.StatusOK || bw["limit_download_kib"] != float64(5120) || j["bandwidth_text"] != "download limit 5120 KiB/s" {
		t.Errorf("job view: %d %v", code, j)
	}
	if code, out := api.do(operator, "POST", "/api/v1/restores", `{"repo_id":"repo-1","snapshot_id":"`+sid+`","target_host_id":"host-a","target_path":"/tmp/r","limit_upload_kib":-1}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), "bandwidth limits must be 0 (none)") {
		t.Errorf("negative limit: %d %v", code, out)
	}

	srvUI, stUI := uiFixture(t)
	now := time.Now().UTC()
	for id, args := range map[string]string{
		"job-bw":   `{"paths":["/etc"],"limit_upload_kib":5120,"limit_download_kib":64}`,
		"job-none": `{"paths":["/etc"]}`,
	} {
		if err := stUI.CreateJob(storage.Job{ID: id, HostID: "host-a", RepoID: "repo-1", Kind: "backup", Status: storage.JobQueued, ActorKind: "schedule",
			CreatedAt: now, Args: []byte(args)}); err != nil {
			t.Fatal(err)
		}
	}
	if _, body := getPage(t, srvUI, auth.RoleViewer, "/jobs/job-bw"); !strings.Contains(body, `<dd id="bandwidth">upload limit 5120 KiB/s, download limit 64 KiB/s</dd>`) {
		t.Error("job page does not show the limit in force")
	}
	if _, body := getPage(t, srvUI, auth.RoleViewer, "/jobs/job-none"); strings.Contains(body, `id="bandwidth"`) {
		t.Error("job page shows a limit for an unlimited job")
	}
}

// A policy's schedule carries its bandwidth windows to the hosts it
// applies to; a bad window is refused with the reason.
func TestPolicyScheduleWindows(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-w1")
	if _, err := st.UpdateHost("host-w1", func(x *storage.Host) error { x.Labels = map[string]string{"role": "web"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	admin := "rmt_trust_admin"
	pol := func(window string) (int, map[string]any) {
		return api.do(admin, "POST", "/api/v1/policies", `{"name":"web","selector":{"role":"web"},"repo_id":"repo-1",
			"schedules":[{"name":"nightly","kind":"backup","cron":"0 * * * *","timezone":"Europe/Berlin","enabled":true,"paths":["/srv"],
			"limit_windows":[`+window+`]}]}`)
	}
	if code, out := pol(`{"days":["mon","funday"],"from":"08:00","to":"18:00","limit_upload_kib":5120}`); code != http.StatusBadRequest || !strings.Contains(out["error"].(string), `limit window 1: day "funday" is not one of`) {
		t.Errorf("bad day: %d %v", code, out)
	}
	if code, out := pol(`{"days":["mon","tue"],"from":"08:00","to":"18:00","limit_upload_kib":5120}`); code != http.StatusCreated {
		t.Fatalf("policy with a window: %d %v", code, out)
	}
	hs, err := st.GetSchedules("host-w1")
	if err != nil {
		t.Fatal(err)
	}
	eff := hs.Effective()
	if len(eff) != 1 || len(eff[0].LimitWindows) != 1 || eff[0].LimitWindows[0].LimitUploadKiB != 5120 {
		t.Fatalf("host schedules %+v", eff)
	}
}
