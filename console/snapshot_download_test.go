package console

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// downloadFixture: host-a (bound to repo-1, online) and host-b (online,
// not bound), each with its agent credential; snapshot sid of repo-1
// indexed with /data/big (size bytes) and /data/sub/{x,y}.
type downloadFixture struct {
	c   *Console
	srv *httptest.Server
	rec *teststore.Recorder
	st  *storage.Store
	sid string
}

func newDownloadFixture(t *testing.T, size uint64) downloadFixture {
	t.Helper()
	c, st, rec := newTestConsole(t)
	withRoles(t, st)
	for _, h := range []string{"host-a", "host-b"} {
		_, rcpt, _ := seal.NewIdentity()
		if err := st.CreateHost(storage.Host{ID: h, Name: h, Enrolled: true, PublicKey: rcpt, CredentialHash: token.Hash("pw-" + h), CreatedAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
		if _, err := st.UpdateHost(h, func(h *storage.Host) error { h.Online = true; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a"}, HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	sid := strings.Repeat("ab", 32)
	if err := st.PutSnapshotCache("repo-1", []byte(`[{"id":"`+sid+`","hostname":"a"}]`)); err != nil {
		t.Fatal(err)
	}
	if err := st.PutIndexNodes("repo-1", sid, []storage.IndexNode{
		{Path: "/data", Name: "data", Type: "dir"},
		{Path: "/data/big", Name: "big", Type: "file", Size: size},
		{Path: "/data/sub", Name: "sub", Type: "dir"},
		{Path: "/data/sub/x", Name: "x", Type: "file", Size: 3},
		{Path: "/data/sub/y", Name: "y", Type: "file", Size: 4},
		{Path: "/data/link", Name: "link", Type: "symlink"},
	}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutIndexMeta(storage.IndexMeta{RepoID: "repo-1", SnapshotID: sid, Complete: true}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	t.Cleanup(srv.Close)
	return downloadFixture{c: c, srv: srv, rec: rec, st: st, sid: sid}
}

// dumpCommand waits for the dump command sent to host and returns it.
func (f downloadFixture) dumpCommand(t *testing.T, host string) wire.Command {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if b := f.rec.Last(wire.CommandsTopic(host)); b != nil {
			var cmd wire.Command
			if err := json.Unmarshal(b, &cmd); err != nil {
				t.Fatal(err)
			}
			if cmd.Kind == wire.JobDump {
				return cmd
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("no dump command was sent to " + host)
	return wire.Command{}
}

// upload POSTs body as host's bytes of job jobID.
func (f downloadFixture) upload(ctx context.Context, jobID, host, password string, body io.Reader) (int, string, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodPost, f.srv.URL+wire.DumpUploadPath(jobID), body)
	if host != "" {
		req.SetBasicAuth(host, password)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), nil
}

func (f downloadFixture) get(ctx context.Context, tok, path string) (*http.Response, error) {
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, f.srv.URL+path, nil)
	req.Header.Set("Authorization", "Bearer "+tok)
	return http.DefaultClient.Do(req)
}

// producer is an agent's stream of n bytes (byte i is i%251), counting
// what was taken from it.
type producer struct {
	n, taken atomic.Int64
}

func (p *producer) Read(b []byte) (int, error) {
	left := p.n.Load() - p.taken.Load()
	if left <= 0 {
		return 0, io.EOF
	}
	if int64(len(b)) > left {
		b = b[:left]
	}
	off := p.taken.Load()
	for i := range b {
		b[i] = byte((off + int64(i)) % 251)
	}
	p.taken.Add(int64(len(b)))
	return len(b), nil
}

// TestDownloadRelayBackPressure: a browser that stops reading stops the
// agent's stream after a bounded amount (the console keeps one 32 KiB
// buffer, the rest is in the kernel's socket buffers), and then gets
// every byte in order; the download is audited with what was sent.
func TestDownloadRelayBackPressure(t *testing.T) {
	const size = 96 << 20
	// Measured: the agent ran 12 MiB ahead of a stalled browser on
	// loopback (two connections' socket buffers). Without back-pressure
	// all 96 MiB would be taken within the two seconds waited.
	const bound = 32 << 20
	f := newDownloadFixture(t, size)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()

	type got struct {
		resp *http.Response
		err  error
	}
	browser := make(chan got, 1)
	go func() {
		resp, err := f.get(ctx, "rmt_trust_operator", "/api/v1/repos/repo-1/snapshots/"+f.sid[:8]+"/download?path=/data/big")
		browser <- got{resp, err}
	}()
	cmd := f.dumpCommand(t, "host-a")
	var args wire.DumpArgs
	if err := json.Unmarshal(cmd.Args, &args); err != nil || args.Path != "/data/big" || args.Archive != "" || args.Size != size || args.SnapshotID != f.sid {
		t.Fatalf("dump args %s: %v", cmd.Args, err)
	}

	// Nobody but host-a, with its credential, sends this job's bytes.
	for _, c := range []struct {
		host, pw string
		want     int
	}{{"", "", 401}, {"host-a", "pw-host-b", 401}, {"host-b", "pw-host-b", 403}} {
		if code, body, err := f.upload(ctx, cmd.JobID, c.host, c.pw, strings.NewReader("forged")); err != nil || code != c.want {
			t.Errorf("upload as %q: %d %s %v, want %d", c.host, code, body, err, c.want)
		}
	}

	p := &producer{}
	p.n.Store(size)
	agent := make(chan string, 1)
	go func() {
		code, body, err := f.upload(ctx, cmd.JobID, "host-a", "pw-host-a", p)
		agent <- strings.TrimSpace(strings.Join([]string{http.StatusText(code), body, errString(err)}, " "))
	}()
	g := <-browser
	if g.err != nil || g.resp.StatusCode != 200 {
		t.Fatalf("download: %v %v", g.resp, g.err)
	}
	defer g.resp.Body.Close()
	if cd := g.resp.Header.Get("Content-Disposition"); cd != `attachment; filename=big` || g.resp.ContentLength != size {
		t.Errorf("headers: %q, length %d", cd, g.resp.ContentLength)
	}
	buf := make([]byte, 1<<20)
	if _, err := io.ReadFull(g.resp.Body, buf); err != nil {
		t.Fatal(err)
	}
	read := int64(len(buf))
	time.Sleep(time.Second)
	t1 := p.taken.Load()
	time.Sleep(time.Second)
	t2 := p.taken.Load()
	t.Logf("stalled browser: agent %.1f MiB ahead", float64(t2-read)/(1<<20))
	if t2 != t1 || t2-read > bound {
		t.Fatalf("the agent's stream ran ahead of a stalled browser: %d MiB taken, then %d MiB, %d MiB read", t1>>20, t2>>20, read>>20)
	}
	for {
		n, err := g.resp.Body.Read(buf)
		for i := 0; i < n; i++ {
			if buf[i] != byte((read+int64(i))%251) {
				t.Fatalf("byte %d differs", read+int64(i))
			}
		}
		read += int64(n)
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	if read != size {
		t.Fatalf("browser got %d bytes, want %d", read, size)
	}
	if a := <-agent; a != "No Content" {
		t.Errorf("agent's POST answered %q", a)
	}
	entries, _, err := f.st.ListAudit(storage.AuditQuery{})
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, e := range entries {
		if e.Action == "GET /repos/{id}/snapshots/{sid}/download" && e.Actor == "operator" && e.Target == cmd.JobID &&
			strings.Contains(e.Detail, "file /data/big of snapshot abababab") && strings.Contains(e.Detail, "100663296 bytes sent, complete") {
			found = true
		}
	}
	if !found {
		t.Errorf("no audit entry for the download in %+v", entries)
	}
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// TestDownloadClosedByBrowser: a browser that goes away mid-download cuts
// the agent's POST and cancels the job (the agent then stops restic).
func TestDownloadClosedByBrowser(t *testing.T) {
	f := newDownloadFixture(t, 1<<30)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bctx, closeTab := context.WithCancel(ctx)
	browser := make(chan *http.Response, 1)
	go func() {
		resp, err := f.get(bctx, "rmt_trust_operator", "/api/v1/repos/repo-1/snapshots/"+f.sid+"/download?path=/data/big&host_id=host-a")
		if err != nil {
			t.Error(err)
		}
		browser <- resp
	}()
	cmd := f.dumpCommand(t, "host-a")
	p := &producer{}
	p.n.Store(1 << 30)
	agent := make(chan int, 1)
	go func() {
		code, _, _ := f.upload(ctx, cmd.JobID, "host-a", "pw-host-a", p)
		agent <- code
	}()
	resp := <-browser
	if resp == nil {
		t.FailNow()
	}
	if _, err := io.CopyN(io.Discard, resp.Body, 4<<20); err != nil {
		t.Fatal(err)
	}
	closeTab()
	resp.Body.Close()
	select {
	case code := <-agent:
		if code == http.StatusNoContent {
			t.Errorf("the agent's POST succeeded after the browser left")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the agent's POST went on after the browser left")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		var last wire.Command
		_ = json.Unmarshal(f.rec.Last(wire.CommandsTopic("host-a")), &last)
		if last.Kind == wire.JobCancel && last.JobID == cmd.JobID {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("no cancel was sent for the closed download's job")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if taken := p.taken.Load(); taken > 64<<20 {
		t.Errorf("the agent sent %d MiB for a browser that read 4", taken>>20)
	}
}

// TestDownloadInfo: sizes come from the index before anything starts; a
// folder is a .tar.gz; what cannot be downloaded says why.
func TestDownloadInfo(t *testing.T) {
	f := newDownloadFixture(t, 1000)
	api := caller{t, f.srv}
	base := "/api/v1/repos/repo-1/snapshots/" + f.sid[:8]
	code, out := api.do("rmt_trust_viewer", "GET", base+"/size?path=/data", "")
	if code != 200 || out["type"] != "dir" || out["archive"] != "tar.gz" || out["size"] != 1007.0 || out["files"] != 3.0 || out["filename"] != "data.tar.gz" || out["host_id"] != "host-a" {
		t.Errorf("folder: %d %v", code, out)
	}
	code, out = api.do("rmt_trust_viewer", "GET", base+"/size?path=/", "")
	if code != 200 || out["filename"] != "snapshot-abababab.tar.gz" || out["size"] != 1007.0 {
		t.Errorf("root: %d %v", code, out)
	}
	code, out = api.do("rmt_trust_viewer", "GET", base+"/size?path=/data/sub/x", "")
	if code != 200 || out["type"] != "file" || out["archive"] != "" || out["size"] != 3.0 {
		t.Errorf("file: %d %v", code, out)
	}
	for p, want := range map[string]string{
		"/data/link": "/data/link is a symlink: only files and folders can be downloaded",
		"/nope":      "/nope is not in snapshot abababab",
		"data":       `"data" must be an absolute path inside the snapshot`,
	} {
		if code, out := api.do("rmt_trust_operator", "GET", base+"/download?path="+p, ""); code != 400 || out["error"] != want {
			t.Errorf("%s: %d %v", p, code, out)
		}
	}
	// An unbound host never gets the repository, an offline one cannot
	// stream; neither starts a job.
	before := f.rec.Commands()
	if code, out := api.do("rmt_trust_operator", "GET", base+"/download?path=/data&host_id=host-b", ""); code != 400 || !strings.Contains(out["error"].(string), "not bound") {
		t.Errorf("unbound host: %d %v", code, out)
	}
	if _, err := f.st.UpdateHost("host-a", func(h *storage.Host) error { h.Online = false; return nil }); err != nil {
		t.Fatal(err)
	}
	if code, out := api.do("rmt_trust_operator", "GET", base+"/download?path=/data", ""); code != 409 || !strings.Contains(out["error"].(string), "no online host") {
		t.Errorf("offline: %d %v", code, out)
	}
	if code, out := api.do("rmt_trust_viewer", "GET", base+"/size?path=/data", ""); code != 200 || !strings.Contains(out["unavailable"].(string), "no online host") || out["size"] != 1007.0 {
		t.Errorf("size while offline: %d %v", code, out)
	}
	if f.rec.Commands() != before {
		t.Error("a refused download sent a command")
	}
	if err := f.st.DropIndex("repo-1", f.sid); err != nil {
		t.Fatal(err)
	}
	if code, out := api.do("rmt_trust_viewer", "GET", base+"/size?path=/data", ""); code != 409 || !strings.Contains(out["error"].(string), "not indexed yet") {
		t.Errorf("not indexed: %d %v", code, out)
	}
}

// TestDownloadJobFailsBeforeSending: an agent that cannot run the dump
// (too old, no server URL) fails its job; the browser hears why at once.
func TestDownloadJobFailsBeforeSending(t *testing.T) {
	f := newDownloadFixture(t, 1000)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	type answer struct {
		code int
		body string
	}
	browser := make(chan answer, 1)
	go func() {
		resp, err := f.get(ctx, "rmt_trust_operator", "/api/v1/repos/repo-1/snapshots/"+f.sid+"/download?path=/data/big")
		if err != nil {
			browser <- answer{0, err.Error()}
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		browser <- answer{resp.StatusCode, string(b)}
	}()
	cmd := f.dumpCommand(t, "host-a")
	start := time.Now()
	res, _ := wire.Encode(&wire.Result{JobID: cmd.JobID, Status: wire.StatusFailed, ExitCode: -1, EndedAt: time.Now().UTC(), Error: `this agent cannot run "dump" jobs`})
	topic, _ := wire.ParseTopic(wire.ResultTopic("host-a", cmd.JobID))
	if err := f.c.Ingest(ctx, "host-a", topic, res); err != nil {
		t.Fatal(err)
	}
	a := <-browser
	if a.code != http.StatusBadGateway || !strings.Contains(a.body, `cannot run \"dump\" jobs`) || time.Since(start) > 5*time.Second {
		t.Errorf("browser got %d %s after %v", a.code, a.body, time.Since(start))
	}
	entries, _, err := f.st.ListAudit(storage.AuditQuery{})
	if err != nil || len(entries) == 0 || entries[0].Status != http.StatusBadGateway || !strings.Contains(entries[0].Detail, "the job ended before sending: failed") {
		t.Errorf("audit: %+v %v", entries, err)
	}
}

// TestDownloadsPerHostBounded: a host streams at most four downloads at
// once; the fifth tab is told to wait, and starts nothing.
func TestDownloadsPerHostBounded(t *testing.T) {
	f := newDownloadFixture(t, 1000)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	for i := 0; i < 4; i++ {
		go func() {
			if resp, err := f.get(ctx, "rmt_trust_operator", "/api/v1/repos/repo-1/snapshots/"+f.sid+"/download?path=/data/big"); err == nil {
				resp.Body.Close()
			}
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for f.rec.Commands() < 4 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := f.rec.Commands(); n != 4 {
		t.Fatalf("%d dump commands sent, want 4", n)
	}
	code, out := caller{t, f.srv}.do("rmt_trust_operator", "GET", "/api/v1/repos/repo-1/snapshots/"+f.sid+"/download?path=/data/big", "")
	if code != http.StatusTooManyRequests || !strings.Contains(out["error"].(string), "already streaming 4 downloads") || f.rec.Commands() != 4 {
		t.Errorf("fifth download: %d %v, %d commands", code, out, f.rec.Commands())
	}
}
