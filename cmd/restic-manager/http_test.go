package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/console"
	"github.com/restic-manager/restic-manager/internal/teststore"
	"github.com/restic-manager/restic-manager/internal/token"
	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// A job's event stream outlives the server's read and write timeouts (a
// job runs for hours): events still arrive after both have passed, while
// the timeouts still apply to everything else.
func TestEventStreamOutlivesServerTimeouts(t *testing.T) {
	st := teststore.Open(t)
	teststore.EnrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a"}}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	if err := st.CreateUser(storage.User{Name: "op", Role: "operator", CreatedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutAPIToken(token.Hash("rmt_http_op"), storage.APIToken{ID: "tok-op", Name: "op", User: "op"}); err != nil {
		t.Fatal(err)
	}
	con, err := console.New(console.Options{Store: st, Publisher: &teststore.Recorder{}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.Close)
	const short = 300 * time.Millisecond
	srv := newHTTPServer(con.Handler(nil), httpTimeouts{readHeader: short, read: short, write: short, idle: time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	base := "http://" + ln.Addr().String()
	do := func(method, path, body string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer rmt_http_op")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := do("POST", "/api/v1/hosts/host-a/jobs", `{"kind":"backup","repo_id":"repo-1","args":{"paths":["/etc"]}}`)
	var created struct {
		ID string `json:"job_id"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&created)
	resp.Body.Close()
	if created.ID == "" {
		t.Fatalf("create job: %d", resp.StatusCode)
	}

	stream := do("GET", "/api/v1/jobs/"+created.ID+"/events", "")
	defer stream.Body.Close()
	events := make(chan string, 16)
	go func() {
		defer close(events)
		sc := bufio.NewScanner(stream.Body)
		for sc.Scan() {
			if ev, ok := strings.CutPrefix(sc.Text(), "event: "); ok {
				events <- ev
			}
		}
	}()
	next := func(what string) string {
		t.Helper()
		select {
		case ev, ok := <-events:
			if !ok {
				t.Fatalf("the stream ended before %s", what)
			}
			return ev
		case <-time.After(10 * time.Second):
			t.Fatalf("no event: %s", what)
		}
		return ""
	}
	if ev := next("the job's state"); ev != "progress" {
		t.Fatalf("first event %q", ev)
	}
	time.Sleep(4 * short) // past the read and the write timeout
	p, _ := wire.Encode(&wire.Progress{JobID: created.ID, Seq: 1, Percent: 50})
	if err := con.Ingest(context.Background(), "host-a", wire.Topic{Host: "host-a", Kind: wire.KindProgress, Job: created.ID}, p); err != nil {
		t.Fatal(err)
	}
	if ev := next("progress after the server's timeouts"); ev != "progress" {
		t.Errorf("event %q, want progress", ev)
	}
}

// An agent download to a slow client takes longer than the server's write
// timeout and still arrives whole: long responses renew their deadline at
// every write.
func TestSlowDownloadOutlivesWriteTimeout(t *testing.T) {
	dir := t.TempDir()
	bin := bytes.Repeat([]byte("restic-manager-agent "), (8<<20)/21)
	if err := os.WriteFile(filepath.Join(dir, "restic-manager-agent-linux-amd64"), bin, 0o755); err != nil {
		t.Fatal(err)
	}
	con, err := console.New(console.Options{Store: teststore.Open(t), Publisher: &teststore.Recorder{}, DownloadsDir: dir})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(con.Close)
	const short = 200 * time.Millisecond
	srv := newHTTPServer(con.Handler(nil), httpTimeouts{readHeader: short, read: short, write: short, idle: time.Second})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	resp, err := http.Get("http://" + ln.Addr().String() + "/downloads/restic-manager-agent-linux-amd64")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	start := time.Now()
	var got int
	buf := make([]byte, 256<<10)
	for {
		n, err := resp.Body.Read(buf)
		got += n
		if err != nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if took := time.Since(start); got != len(bin) {
		t.Errorf("received %d of %d bytes in %v", got, len(bin), took)
	} else if took < short {
		t.Logf("the download took only %v: the test did not outlast the timeout", took)
	}
}
