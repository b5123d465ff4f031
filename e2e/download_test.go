package e2e

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/rand"
	"encoding/json"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// downloadClient is the admin's session without the API client's 30 s
// timeout: a download takes as long as it takes.
func (f *fleet) downloadClient() *http.Client {
	c := f.srv.API.HTTP
	return &http.Client{Jar: c.Jar, Transport: c.Transport}
}

// downloadInfo is GET …/size: what a download holds, before it starts.
type downloadInfo struct {
	Path, Type, Archive, Filename string
	Size                          uint64
	Files                         int
}

func (f *fleet) downloadInfo(t testing.TB, snap, p string) downloadInfo {
	t.Helper()
	var info downloadInfo
	f.srv.do("GET", "/api/v1/repos/"+f.repoID+"/snapshots/"+snap+"/size?path="+url.QueryEscape(p), nil, &info, 200)
	return info
}

// download starts GET …/download and returns the response (200 checked).
func (f *fleet) download(t testing.TB, ctx context.Context, snap, p string) *http.Response {
	t.Helper()
	req, _ := http.NewRequestWithContext(ctx, "GET", f.srv.URL("/api/v1/repos/"+f.repoID+"/snapshots/"+snap+"/download?path="+url.QueryEscape(p)), nil)
	resp, err := f.downloadClient().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 200 {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		t.Fatalf("download %s: %d %s", p, resp.StatusCode, b)
	}
	return resp
}

// TestDownloadFileAndFolder: a file comes as is, a folder as a .tar.gz
// whose files are the source's, both with sizes known before they start,
// streamed from the agent over HTTPS (the server's generated CA, pinned).
func TestDownloadFileAndFolder(t *testing.T) { testDownloadFileAndFolder(t, testenv.Restic(t)) }

// TestDownloadFileAndFolderRestic014: the same with Debian 12's restic.
func TestDownloadFileAndFolderRestic014(t *testing.T) {
	testDownloadFileAndFolder(t, testenv.Restic014(t))
}

func testDownloadFileAndFolder(t *testing.T, restic string) {
	f := newFleet(t, restic)
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 200)
	if err := os.Symlink("big.bin", filepath.Join(src, "link")); err != nil {
		t.Fatal(err)
	}
	snap := f.run(t, "backup", map[string]any{"paths": []string{src}}).SnapshotID
	f.browse(t, snap, src) // indexes the snapshot

	// A file: its size first, then its bytes.
	info := f.downloadInfo(t, snap, src+"/big.bin")
	want, _ := os.ReadFile(filepath.Join(src, "big.bin"))
	if info.Type != "file" || info.Size != uint64(len(want)) || info.Archive != "" || info.Filename != "big.bin" {
		t.Fatalf("file info %+v", info)
	}
	resp := f.download(t, context.Background(), snap, src+"/big.bin")
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, want) {
		t.Fatalf("file: %d bytes (%v), want the source's %d", len(got), err, len(want))
	}
	if resp.Header.Get("Content-Disposition") != "attachment; filename=big.bin" || resp.ContentLength != int64(len(want)) {
		t.Errorf("file headers %v", resp.Header)
	}
	fileJob := resp.Header.Get("X-Job-Id")

	// A folder: a .tar.gz of every file below it.
	var srcFiles int
	var srcBytes uint64
	_ = filepath.Walk(src, func(_ string, fi os.FileInfo, _ error) error {
		if fi.Mode().IsRegular() {
			srcFiles++
			srcBytes += uint64(fi.Size())
		}
		return nil
	})
	info = f.downloadInfo(t, snap, src)
	if info.Type != "dir" || info.Archive != "tar.gz" || info.Files != srcFiles || info.Size != srcBytes || info.Filename != filepath.Base(src)+".tar.gz" {
		t.Fatalf("folder info %+v, want %d files, %d bytes", info, srcFiles, srcBytes)
	}
	resp = f.download(t, context.Background(), snap, src)
	defer resp.Body.Close()
	if resp.Header.Get("Content-Type") != "application/gzip" {
		t.Errorf("folder Content-Type %q", resp.Header.Get("Content-Type"))
	}
	zr, err := gzip.NewReader(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	files, links := 0, 0
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		switch h.Typeflag {
		case tar.TypeReg:
			b, _ := io.ReadAll(tr)
			srcb, err := os.ReadFile("/" + h.Name)
			if err != nil || !bytes.Equal(b, srcb) {
				t.Errorf("%s: %d bytes differ from the source's (%v)", h.Name, len(b), err)
			}
			files++
		case tar.TypeSymlink:
			if h.Linkname != "big.bin" {
				t.Errorf("%s links to %q", h.Name, h.Linkname)
			}
			links++
		}
	}
	if files != srcFiles || links != 1 {
		t.Errorf("archive holds %d files and %d links, want %d and 1", files, links, srcFiles)
	}
	folderJob := resp.Header.Get("X-Job-Id")

	// Each download is a job of its user, whose output says what was sent,
	// and an audit entry.
	for _, id := range []string{fileJob, folderJob} {
		j := f.srv.waitJob(id, time.Minute)
		var out wire.DumpOutput
		_ = json.Unmarshal(j.Output, &out)
		if j.Status != "succeeded" || j.Kind != "dump" || j.Actor != "admin" || out.BytesSent == 0 || out.BytesRead < out.BytesSent && out.Archive == "" {
			t.Errorf("job %s: %s %s by %s, output %s", id, j.Status, j.Error, j.Actor, j.Output)
		}
	}
	// The job page says what the download did.
	page, err := f.srv.API.HTTP.Get(f.srv.URL("/jobs/" + fileJob))
	if err != nil {
		t.Fatal(err)
	}
	html, _ := io.ReadAll(page.Body)
	page.Body.Close()
	if want := `id="kind-dump">file ` + src + `/big.bin: 2.0 MiB sent to the browser`; !strings.Contains(string(html), want) {
		t.Errorf("job page lacks %q", want)
	}
	var audit []struct{ Action, Actor, Target, Detail string }
	f.srv.do("GET", "/api/v1/audit", nil, &audit, 200)
	seen := 0
	for _, e := range audit {
		if e.Action == "GET /repos/{id}/snapshots/{sid}/download" && e.Actor == "admin" && strings.HasSuffix(e.Detail, "complete") && (e.Target == fileJob || e.Target == folderJob) {
			seen++
		}
	}
	if seen != 2 {
		t.Errorf("audit has %d complete downloads, want 2: %+v", seen, audit)
	}
}

// resticUnder lists the PIDs of restic processes whose parent is ppid.
func resticUnder(ppid int) []int {
	var pids []int
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		b, err := os.ReadFile("/proc/" + e.Name() + "/stat")
		if err != nil {
			continue
		}
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		if i < 0 || !strings.Contains(s[:i], "(restic") {
			continue
		}
		fields := strings.Fields(s[i+1:])
		if len(fields) > 2 && fields[0] != "Z" && fields[1] == strconv.Itoa(ppid) {
			pids = append(pids, pid)
		}
	}
	return pids
}

// TestDownloadClosedTabKillsRestic: closing the browser's connection in
// the middle of a download ends the agent's restic within seconds, and
// restic leaves no lock behind.
func TestDownloadClosedTabKillsRestic(t *testing.T) {
	f := newFleet(t, "")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := t.TempDir()
	big := make([]byte, 256<<20)
	_, _ = rand.Read(big)
	if err := os.WriteFile(filepath.Join(src, "huge.bin"), big, 0o644); err != nil {
		t.Fatal(err)
	}
	snap := f.run(t, "backup", map[string]any{"paths": []string{src}}).SnapshotID
	f.browse(t, snap, src)

	ctx, closeTab := context.WithCancel(context.Background())
	defer closeTab()
	resp := f.download(t, ctx, snap, src+"/huge.bin")
	if _, err := io.CopyN(io.Discard, resp.Body, 8<<20); err != nil { // then the reader stalls
		t.Fatal(err)
	}
	agentPid := f.agent.Proc.Pid()
	if len(resticUnder(agentPid)) == 0 {
		t.Fatal("no restic runs under the agent while the download is open")
	}
	closeTab()
	resp.Body.Close()
	start := time.Now()
	eventually(t, 15*time.Second, "restic gone after the tab closed", func() error {
		if p := resticUnder(agentPid); len(p) > 0 {
			return errorf("restic %v still runs", p)
		}
		return nil
	})
	t.Logf("restic ended %v after the connection closed", time.Since(start).Round(10*time.Millisecond))
	job := resp.Header.Get("X-Job-Id")
	j := f.srv.waitJob(job, 30*time.Second)
	if j.Status != "cancelled" && j.Status != "failed" {
		t.Errorf("job %s: %s", job, j.Status)
	}
	t.Logf("the closed download's job: %s: %s", j.Status, j.Error)
	if out := strings.TrimSpace(string(restic(t, f.repoURL, f.password, "list", "locks"))); out != "" {
		t.Errorf("restic left a lock: %s", out)
	}
}
