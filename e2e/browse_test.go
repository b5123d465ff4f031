package e2e

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// resticChildren lists a snapshot folder's direct children with restic.
func resticChildren(t testing.TB, f *fleet, snap, dir string) []string {
	out := restic(t, f.repoURL, f.password, "ls", "--json", snap, dir)
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var n struct {
			StructType  string `json:"struct_type"`
			MessageType string `json:"message_type"`
			Path, Name  string
		}
		if json.Unmarshal(sc.Bytes(), &n) != nil || (n.StructType != "node" && n.MessageType != "node") || n.Path == dir {
			continue
		}
		if filepath.Dir(n.Path) == dir {
			names = append(names, n.Name)
		}
	}
	sort.Strings(names)
	return names
}

// browse lists a folder through the API, starting the snapshot's index
// (an operator's POST) and waiting for it the first time.
func (f *fleet) browse(t testing.TB, snap, dir string) []string {
	var names []string
	started := false
	eventually(t, 2*time.Minute, "folder "+dir, func() error {
		req, _ := http.NewRequest("GET", f.srv.URL("/api/v1/repos/"+f.repoID+"/snapshots/"+snap+"/ls?limit=10000&path="+dir), nil)
		resp, err := f.srv.API.HTTP.Do(req)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		if resp.StatusCode == http.StatusConflict {
			// Not indexed: reading starts nothing; an operator does.
			if !started {
				f.srv.do("POST", "/api/v1/repos/"+f.repoID+"/snapshots/"+snap+"/index", nil, nil, 202)
				started = true
			}
			return errorf("indexing")
		}
		if resp.StatusCode != 200 {
			return errorf("status %d", resp.StatusCode)
		}
		var entries []struct{ Name string }
		if err := json.NewDecoder(resp.Body).Decode(&entries); err != nil {
			return err
		}
		names = names[:0]
		for _, e := range entries {
			names = append(names, e.Name)
		}
		return nil
	})
	sort.Strings(names)
	return names
}

func TestBrowseFromTheIndexMatchesRestic(t *testing.T) {
	f := newFleet(t, "", "--health-delay=1s")
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	src := makeTree(t, 400)
	_ = os.MkdirAll(filepath.Join(src, "d01", "deeper", "deepest"), 0o755)
	_ = os.WriteFile(filepath.Join(src, "d01", "deeper", "deepest", "leaf"), []byte("x"), 0o644)
	b := f.run(t, "backup", map[string]any{"paths": []string{src}})

	for _, dir := range []string{"/", filepath.Dir(src), src, src + "/d01", src + "/d01/deeper", src + "/d07"} {
		got, want := f.browse(t, b.SnapshotID, dir), resticChildren(t, f, b.SnapshotID, dir)
		if fmt.Sprint(got) != fmt.Sprint(want) {
			t.Errorf("%s: index lists %v, restic %v", dir, got, want)
		}
	}
	// A short ID works once the snapshot list is cached.
	eventually(t, time.Minute, "short id", func() error {
		resp, err := f.srv.API.HTTP.Get(f.srv.URL("/api/v1/repos/" + f.repoID + "/snapshots/" + b.SnapshotID[:8] + "/ls?path=" + src))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return errorf("status %d", resp.StatusCode)
		}
		return nil
	})

	// Forgetting the snapshot drops its index.
	f.run(t, "backup", map[string]any{"paths": []string{src}})
	f.run(t, "forget", map[string]any{"retention": map[string]any{"keep_last": 1}})
	// The drop follows the forget's result within moments (it runs after
	// the result is stored, not before it is acknowledged).
	eventually(t, 10*time.Second, "a forgotten snapshot answers 404", func() error {
		resp, err := f.srv.API.HTTP.Get(f.srv.URL("/api/v1/repos/" + f.repoID + "/snapshots/" + b.SnapshotID + "/ls?path=/"))
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusNotFound {
			return errorf("status %d", resp.StatusCode)
		}
		return nil
	})
}
