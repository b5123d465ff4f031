package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	cdpbrowser "github.com/chromedp/cdproto/browser"
	"github.com/chromedp/chromedp"
)

// TestBrowserDownloadFileAndFolder: in the restore wizard's file browser,
// a file downloads as is and a folder, once its size is shown, as a
// .tar.gz; both saved by Chromium equal the source.
func TestBrowserDownloadFileAndFolder(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 30)
	bk := f.run(t, "backup", map[string]any{"paths": []string{src}})
	f.waitSnapshotsListed(t, 1)

	b := newBrowser(t, f.srv)
	saved := t.TempDir()
	if _, err := chromedp.CallBrowser(b.ctx, cdpbrowser.SetDownloadBehavior, cdpbrowser.SetDownloadBehaviorParams{
		Behavior: cdpbrowser.SetDownloadBehaviorBehaviorAllow, DownloadPath: saved}); err != nil {
		t.Fatalf("let downloads land in %s: %v", saved, err)
	}
	b.login("admin", adminPassword)
	b.open("/restore")
	b.step("pick the repository and the snapshot",
		chromedp.SetValue(chromedp.CSS(`#w-repo`), f.repoID),
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#w-repo').dispatchEvent(new Event('change'))`),
		chromedp.Click(chromedp.CSS(`button.pick-snapshot[data-id="`+bk.SnapshotID+`"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#w-tree`)),
	)
	dir := ""
	for _, part := range strings.Split(strings.Trim(src, "/"), "/") {
		dir += "/" + part
		b.step("open "+dir, chromedp.Click(chromedp.CSS(`button.tree-dir[data-path="`+dir+`"]`)))
	}
	b.step("the listing of "+src, chromedp.WaitVisible(chromedp.CSS(`a.dl[data-path="`+src+`/big.bin"]`)))

	// The file: its size is on its row and in the link's label.
	if label := eval[string](b, `document.querySelector('a.dl[data-path="`+src+`/big.bin"]').getAttribute('aria-label')`); label != "Download big.bin (2.0 MiB)" {
		t.Errorf("file link label %q", label)
	}
	b.step("download big.bin", chromedp.Click(chromedp.CSS(`a.dl[data-path="`+src+`/big.bin"]`)))
	if got, want := waitSaved(t, saved, "big.bin"), mustRead(t, filepath.Join(src, "big.bin")); !bytes.Equal(got, want) {
		t.Fatalf("saved big.bin: %d bytes, differ from the source's %d", len(got), len(want))
	}

	// A folder: first what it holds, then the link.
	d01 := src + "/d01"
	b.step("ask for d01's size",
		chromedp.Click(chromedp.CSS(`.dl-dir[data-path="`+d01+`"] button.dl-size`)),
		chromedp.WaitVisible(chromedp.CSS(`.dl-dir[data-path="`+d01+`"] a.dl`)),
	)
	if txt := b.text(`.dl-dir[data-path="` + d01 + `"]`); !strings.Contains(txt, "Download d01.tar.gz") || !strings.Contains(txt, "in 3 files before compression") {
		t.Errorf("folder control says %q", txt)
	}
	b.shot("download-folder")
	b.step("download d01.tar.gz", chromedp.Click(chromedp.CSS(`.dl-dir[data-path="`+d01+`"] a.dl`)))
	zr, err := gzip.NewReader(bytes.NewReader(waitSaved(t, saved, "d01.tar.gz")))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files := 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		got, _ := io.ReadAll(tr)
		if want := mustRead(t, "/"+h.Name); !bytes.Equal(got, want) {
			t.Errorf("%s differs from the source", h.Name)
		}
		files++
	}
	if files != 3 {
		t.Errorf("d01.tar.gz holds %d files, want 3", files)
	}
}

// waitSaved waits for Chromium to finish saving name in dir (it writes a
// .crdownload file first) and returns its bytes.
func waitSaved(t *testing.T, dir, name string) []byte {
	t.Helper()
	var b []byte
	eventually(t, time.Minute, "download of "+name, func() error {
		ents, _ := os.ReadDir(dir)
		for _, e := range ents {
			if strings.HasSuffix(e.Name(), ".crdownload") {
				return errorf("%s still downloading", e.Name())
			}
		}
		var err error
		b, err = os.ReadFile(filepath.Join(dir, name))
		return err
	})
	return b
}

func mustRead(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}
