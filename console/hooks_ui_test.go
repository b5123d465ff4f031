package console

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// The host page names the agent's hooks and sources (and offers them to
// the run form); a job page shows its hook runs, output escaped, the
// failed one marked, and a backup's per-source snapshots; the repository
// page marks a source snapshot.
func TestPagesShowHooksAndSources(t *testing.T) {
	srv, st := uiFixture(t)
	if _, err := st.UpdateHost("host-a", func(h *storage.Host) error {
		h.Hooks, h.Sources, h.RestoreSources = []string{"pg-freeze"}, []string{"pg", "redis"}, []string{"pg"}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, body := getPage(t, srv, auth.RoleOperator, "/hosts/host-a")
	for _, want := range []string{`<code class="badge hook-name">pg-freeze</code>`, `<code class="badge source-name">pg</code> <span class="sub">(can restore)</span>`,
		`name="hooks" value="pg-freeze"`, `name="sources" value="redis"`, "defined in the agent's own configuration"} {
		if !strings.Contains(body, want) {
			t.Errorf("host page lacks %s", want)
		}
	}
	out, _ := json.Marshal(wire.BackupOutput{Snapshots: []wire.SourceSnapshot{{Status: "succeeded", SnapshotID: strings.Repeat("a", 64)},
		{Source: "pg", Status: "failed", Error: "pg_dump exited 1"}}})
	now := time.Now().UTC()
	if err := st.CreateJob(storage.Job{ID: "job-h", HostID: "host-a", RepoID: "repo-1", Kind: "backup", Status: storage.JobFailed, ActorKind: "user",
		CreatedAt: now, EndedAt: now, Error: "before-hook pg-freeze failed", Output: out,
		Hooks: []wire.HookRun{{Name: "pg-freeze", Phase: wire.HookBefore, ExitCode: 2, DurationMS: 12, OutputTail: "<script>alert(1)</script>"}}}); err != nil {
		t.Fatal(err)
	}
	code, body := getPage(t, srv, auth.RoleViewer, "/jobs/job-h")
	if code != http.StatusOK {
		t.Fatalf("job page %d", code)
	}
	for _, want := range []string{`class="hook-failed" data-hook="pg-freeze" data-phase="before"`, "&lt;script&gt;alert(1)&lt;/script&gt;", "12 ms",
		`<tr data-source="pg">`, "pg_dump exited 1"} {
		if !strings.Contains(body, want) {
			t.Errorf("job page lacks %s", want)
		}
	}
	if strings.Contains(body, "<script>alert(1)") {
		t.Error("a hook's output went into the page unescaped")
	}
	_ = st.PutSnapshotCache("repo-1", []byte(`[{"id":"abcdef0123456789","short_id":"abcdef01","time":"2026-01-01T00:00:00Z","hostname":"web1","paths":["/pg.sql"],"tags":["source:pg"]}]`))
	if _, body := getPage(t, srv, auth.RoleViewer, "/repos/repo-1"); !strings.Contains(body, `class="badge source-marker"`) || !strings.Contains(body, ">source pg<") {
		t.Error("repository page does not mark the source snapshot")
	}
}
