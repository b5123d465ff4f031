package e2e

import (
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// TestForgetPreview: in the host page's schedule editor, an operator
// previews a retention before saving it (a real agent runs restic forget
// --dry-run), the repository page previews the saved schedule, and the
// real forget then removes exactly the snapshot the preview named. The
// previews delete nothing and leave the console's snapshot list alone.
func TestForgetPreview(t *testing.T) {
	t.Parallel()
	f := newFleet(t, "", "--health-delay=1s")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 10)
	for range 3 {
		f.run(t, "backup", map[string]any{"paths": []string{src}})
	}
	type cachedSnap struct {
		ID string `json:"id"`
	}
	cachedCount := func() int {
		var cached []cachedSnap
		f.srv.do("GET", "/api/v1/repos/"+f.repoID+"/snapshots", nil, &cached, 200)
		return len(cached)
	}
	eventually(t, time.Minute, "the console's snapshot list", func() error {
		if n := cachedCount(); n != 3 {
			return errorf("%d cached", n)
		}
		return nil
	})
	snaps := resticSnapshots(t, f.repoURL, f.password) // oldest first
	if len(snaps) != 3 {
		t.Fatalf("%d snapshots, want 3", len(snaps))
	}

	b := newBrowser(t, f.srv)
	b.login("admin", adminPassword)
	b.open("/hosts/" + f.host.ID)
	b.step("a forget schedule keeping 2",
		chromedp.Click(chromedp.CSS(`#schedule-editor-box summary`)),
		chromedp.SendKeys(chromedp.CSS(`#schedule-editor input[name=name]`), "thin out"),
		chromedp.SendKeys(chromedp.CSS(`#schedule-editor input[name=cron]`), "0 5 * * *"),
		chromedp.SetValue(chromedp.CSS(`#schedule-editor select[name=kind]`), "forget"),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#schedule-editor select[name=kind]').dispatchEvent(new Event('change'))`),
		chromedp.SendKeys(chromedp.CSS(`#schedule-editor input[name=keep_last]`), "2"),
		chromedp.Click(chromedp.CSS(`#schedule-editor .forget-preview-run`)),
	)
	b.waitJS("the preview", `document.querySelector('#schedule-editor .forget-preview').textContent.includes('removes')`, 2*time.Minute)
	removed := eval[[]string](b, `[...document.querySelectorAll('#schedule-editor .forget-remove code')].map(c => c.textContent)`)
	if len(removed) != 1 || !strings.HasPrefix(snaps[0].ID, removed[0]) {
		t.Fatalf("the preview removes %v, want the oldest %s", removed, snaps[0].ID[:8])
	}
	if n := len(resticSnapshots(t, f.repoURL, f.password)); n != 3 {
		t.Fatalf("%d snapshots after the preview, want 3: it deleted", n)
	}
	b.step("save it", chromedp.Click(chromedp.CSS(`#schedule-save`)), chromedp.WaitVisible(chromedp.CSS(`#schedule-list tr[data-schedule]`)))

	// The repository page previews the saved schedule the same way.
	b.open("/repos/" + f.repoID)
	b.step("preview from the repository page", chromedp.Click(chromedp.CSS(`#forget-schedules .forget-preview-run`)))
	b.waitJS("the repository page's preview", `document.querySelector('#forget-schedules .forget-preview').textContent.includes('removes')`, 2*time.Minute)
	if got := eval[[]string](b, `[...document.querySelectorAll('#forget-schedules .forget-remove code')].map(c => c.textContent)`); !slices.Equal(got, removed) {
		t.Errorf("repository page preview removes %v, the editor's %v", got, removed)
	}
	if n := cachedCount(); n != 3 {
		t.Errorf("the console's snapshot list has %d after the previews, want 3", n)
	}

	// The real forget removes what the preview said.
	f.run(t, "forget", map[string]any{"retention": map[string]any{"keep_last": 2}})
	after := resticSnapshots(t, f.repoURL, f.password)
	if len(after) != 2 || slices.ContainsFunc(after, func(s resticSnap) bool { return strings.HasPrefix(s.ID, removed[0]) }) {
		t.Errorf("after the forget: %+v, want the two newest", after)
	}
}
