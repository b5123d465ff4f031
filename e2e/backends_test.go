package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/benchout"
	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// createRepoEnv adds a repository with backend variables (sealed by the
// console, sent sealed to the agents) for hosts.
func (s *server) createRepoEnv(name, url, password string, env map[string]string, hosts ...string) string {
	s.t.Helper()
	var r struct {
		ID string `json:"id"`
	}
	s.do("POST", "/api/v1/repos", map[string]any{"name": name, "url": url, "password": password, "env": env, "hosts": hosts}, &r, 201)
	return r.ID
}

// TestBackendsEndToEnd runs the whole life of a repository through the
// console, a real agent and real restic on each kind of backend a fleet
// uses besides rest-server: a local path, an S3-compatible server
// (versitygw) and an SFTP server (OpenSSH's sshd), both private to the test
// on loopback. Per backend: init, backup, browse, restore, a second backup
// and forget keep_last 1 (on the maintenance path: the restic 0.14.0 host),
// each checked against restic run directly; then a
// backup from a host with restic 0.14.0 (sftp.command rather than
// sftp.args). Then copies S3 → SFTP, SFTP → local and, on restic 0.14.0,
// SFTP → S3. No credential shows in the logs or the agent's files.
func TestBackendsEndToEnd(t *testing.T) {
	t.Parallel()
	backends := []backend{localBackend(t), startS3(t), startSFTP(t)}
	srv := newServer(t)
	host := srv.createHost("backends-1")
	agent := enrollAgent(t, srv, host.EnrollToken, testenv.Restic(t))
	agent.start(t)
	old := srv.createHost("backends-restic014")
	oldAgent := enrollAgent(t, srv, old.EnrollToken, testenv.Restic014(t))
	oldAgent.start(t)
	srv.waitOnline(host.ID, true)
	srv.waitOnline(old.ID, true)

	repoOf := map[string]string{}
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) {
			// The subtest's own server handle, so that an API failure
			// ends this subtest, not its parent from another goroutine.
			sub := &server{Server: srv.Server, t: t}
			f := &fleet{srv: sub, host: host, agent: agent, repoURL: b.url, password: "repo-secret-" + b.name}
			// The restic 0.14.0 host is the repository's maintenance
			// host: forget goes there, over the same backend.
			var r struct {
				ID string `json:"id"`
			}
			sub.do("POST", "/api/v1/repos", map[string]any{"name": b.name, "url": b.url, "password": f.password, "env": b.env,
				"hosts": []string{host.ID, old.ID}, "maintenance": map[string]any{"url": b.url, "env": b.env, "host_id": old.ID}}, &r, 201)
			f.repoID = r.ID
			repoOf[b.name] = f.repoID
			testBackend(t, f, b, old)
			// The API shows the repository without its credentials.
			var repo map[string]any
			sub.do("GET", "/api/v1/repos/"+f.repoID, nil, &repo, 200)
			shown, _ := json.Marshal(repo)
			for k, v := range b.env {
				if k != "AWS_ACCESS_KEY_ID" && k != "RESTIC_SFTP_KNOWN_HOSTS" && strings.Contains(string(shown), v) {
					t.Errorf("GET /repos shows %s: %s", k, shown)
				}
			}
		})
	}

	// Copies between backends: every snapshot of the source repository
	// reaches the destination, as restic itself sees it there. SFTP is
	// the destination first, then the source (its key and known_hosts
	// reach the ssh restic starts for --from-repository-file), also from
	// the restic 0.14.0 host (sftp.command, which 0.14 applies to the
	// second repository too).
	for _, c := range []struct {
		from, to backend
		host     harness.HostCreated
	}{
		{backends[1], backends[2], host}, // S3 → SFTP
		{backends[2], backends[0], host}, // SFTP → local
		{backends[2], backends[1], old},  // SFTP → S3, restic 0.14.0
	} {
		name := "copy " + c.from.name + " to " + c.to.name
		if c.host.ID == old.ID {
			name += " on restic 0.14.0"
		}
		t.Run(name, func(t *testing.T) {
			sub := &server{Server: srv.Server, t: t}
			id := sub.createJob(c.host.ID, map[string]any{"kind": "copy", "repo_id": repoOf[c.from.name], "args": map[string]any{"to_repo_id": repoOf[c.to.name]}})
			j := sub.waitJob(id, 3*time.Minute)
			if j.Status != "succeeded" {
				t.Fatalf("copy: %s: %s\n%s", j.Status, j.Error, j.StderrTail)
			}
			var out struct {
				Copied  []string `json:"copied"`
				Skipped int      `json:"skipped"`
			}
			if err := json.Unmarshal(j.Output, &out); err != nil || len(out.Copied) == 0 {
				t.Errorf("copy output %s: nothing copied (%v)", j.Output, err)
			}
			checkCopied(t, c.from, c.to, j.Output)
			t.Logf("%s: copied %d snapshots, %d already there", name, len(out.Copied), out.Skipped)
		})
	}

	// Neither the console's nor the agents' logs, nor any file the agents
	// keep, holds a backend credential.
	var secrets []string
	for _, b := range backends {
		for k, v := range b.env {
			if k == "AWS_SECRET_ACCESS_KEY" || k == "RESTIC_SFTP_KEY" {
				secrets = append(secrets, v)
			}
			if k == "RESTIC_SFTP_KEY" {
				lines := strings.Split(strings.TrimSpace(v), "\n")
				secrets = append(secrets, lines[1:len(lines)-1]...)
			}
		}
	}
	if len(secrets) < 3 {
		t.Fatalf("only %d secrets to look for", len(secrets))
	}
	for name, out := range map[string]string{"server": srv.Proc.Output(), "agent": agent.Proc.Output(), "restic 0.14 agent": oldAgent.Proc.Output()} {
		for _, s := range secrets {
			if strings.Contains(out, s) {
				t.Errorf("%s log holds a credential (%.12s…)", name, s)
			}
		}
	}
	for _, a := range []*agentProc{agent, oldAgent} {
		dir := filepath.Dir(a.Config)
		if hits := scanFiles(t, dir, secrets...); len(hits) > 0 {
			t.Errorf("agent files hold a credential: %v", hits)
		}
		// Health jobs the console starts after a copy may still be running
		// (their secret files exist while restic runs): wait for quiet.
		eventually(t, time.Minute, "the agent's secret temp dir empty", func() error {
			if left, err := os.ReadDir(filepath.Join(dir, "state", "tmp")); err != nil || len(left) > 0 {
				return fmt.Errorf("%v, left in it: %v", err, left)
			}
			return nil
		})
	}
}

// checkCopied fails t unless every snapshot of from's repository has its
// copy in to's, as restic itself lists them: a snapshot there whose
// original it is, or that is a copy of the same original (a snapshot
// that was itself copied into from).
func checkCopied(t *testing.T, from, to backend, copyOutput json.RawMessage) {
	t.Helper()
	var src, dst []struct {
		ID       string `json:"id"`
		Original string `json:"original"`
	}
	bin := testenv.Restic(t)
	if err := json.Unmarshal(resticOn(t, bin, from, from.url, "repo-secret-"+from.name, "snapshots", "--json"), &src); err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(resticOn(t, bin, to, to.url, "repo-secret-"+to.name, "snapshots", "--json"), &dst); err != nil {
		t.Fatal(err)
	}
	there := map[string]bool{}
	for _, s := range dst {
		there[s.ID] = true
		if s.Original != "" {
			there[s.Original] = true
		}
	}
	for _, s := range src {
		if !there[s.ID] && (s.Original == "" || !there[s.Original]) {
			t.Errorf("%s snapshot %.8s has no copy in the %s repository (copy output %s)", from.name, s.ID, to.name, copyOutput)
		}
	}
	if len(src) == 0 {
		t.Fatalf("no snapshots in the %s repository", from.name)
	}
}

func testBackend(t *testing.T, f *fleet, b backend, old harness.HostCreated) {
	restic018 := testenv.Restic(t)
	snapshots := func() []resticSnap {
		var snaps []resticSnap
		out := resticOn(t, restic018, b, f.repoURL, f.password, "snapshots", "--json")
		if err := json.Unmarshal(out, &snaps); err != nil {
			t.Fatalf("restic snapshots output %q: %v", out, err)
		}
		return snaps
	}

	f.initRepo(t)
	src := makeTree(t, 300)
	first := f.run(t, "backup", map[string]any{"paths": []string{src}})
	var sum struct {
		TotalFilesProcessed int `json:"total_files_processed"`
	}
	if err := json.Unmarshal(first.Summary, &sum); err != nil || sum.TotalFilesProcessed != 301 {
		t.Errorf("backup summary %s: %v", first.Summary, err)
	}
	if snaps := snapshots(); len(snaps) != 1 || snaps[0].ID != first.SnapshotID {
		t.Fatalf("restic lists %+v, the job made %s", snaps, first.SnapshotID)
	}

	// Browse (the agent's ls indexes the snapshot): the root leads to the
	// source, whose entries are the tree's.
	top := strings.Split(strings.TrimPrefix(src, "/"), "/")[0]
	if root := f.browse(t, first.SnapshotID, "/"); !slices.Equal(root, []string{top}) {
		t.Errorf("snapshot root lists %v, want [%s]", root, top)
	}
	var want []string
	ents, _ := os.ReadDir(src)
	for _, e := range ents {
		want = append(want, e.Name())
	}
	if got := f.browse(t, first.SnapshotID, src); !slices.Equal(got, want) {
		t.Errorf("browse %s lists %v, want %v", src, got, want)
	}

	// Restore: the same files, the same bytes.
	target := t.TempDir()
	f.run(t, "restore", map[string]any{"snapshot_id": first.SnapshotID, "target_path": target})
	sameTree(t, src, filepath.Join(target, src))

	// A second backup, then forget keeps only it.
	if err := os.WriteFile(filepath.Join(src, "new.txt"), []byte("second\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	second := f.run(t, "backup", map[string]any{"paths": []string{src}})
	fg := f.run(t, "forget", map[string]any{"retention": map[string]any{"keep_last": 1}})
	if fg.HostID != old.ID {
		t.Errorf("forget ran on %s, want the maintenance host %s", fg.HostID, old.ID)
	}
	if snaps := snapshots(); len(snaps) != 1 || snaps[0].ID != second.SnapshotID {
		t.Fatalf("after forget restic lists %+v, want only %s", snaps, second.SnapshotID)
	}

	// restic 0.14.0 on another host backs up into the same repository.
	of := *f
	of.host = old
	third := of.run(t, "backup", map[string]any{"paths": []string{src}})
	// (restic 0.14's backup summary names the snapshot by its short ID.)
	if snaps := snapshots(); len(snaps) != 2 || len(third.SnapshotID) < 8 || !strings.HasPrefix(snaps[1].ID, third.SnapshotID) {
		t.Fatalf("after restic 0.14's backup restic lists %+v, want %s last", snaps, third.SnapshotID)
	}
	t.Logf("%s: %s ok (snapshots %s, %s)", b.name, b.url, second.SnapshotID[:8], third.SnapshotID[:8])
}

// BenchmarkBackends times a backup of the same data set (2,000 files,
// incompressible) through the console and one agent into a fresh
// repository on each backend, rest-server included for comparison, and
// then copies between backends through the same agent (rest-server → S3,
// S3 → SFTP, SFTP → local), each into a fresh repository initialised with
// its source's chunker parameters, as a policy's copy destination is:
// wall time from the API request to the job's success, and MiB/s of the
// data set. Figures for the closing note, printed, not asserted. The data
// sets are 200 MiB and 1 GiB; RM_BENCH_MIB (a comma list, e.g. "1024")
// picks others.
//
//	RM_BENCH_NORACE=1 go test ./e2e -run '^$' -bench BenchmarkBackends -benchtime 1x -timeout 60m
func BenchmarkBackends(b *testing.B) {
	sizes := []int64{200, 1024}
	if v := os.Getenv("RM_BENCH_MIB"); v != "" {
		sizes = nil
		for _, f := range strings.Split(v, ",") {
			n, err := strconv.ParseInt(strings.TrimSpace(f), 10, 64)
			if err != nil || n <= 0 {
				b.Fatalf("RM_BENCH_MIB=%q: want sizes in MiB, comma separated", v)
			}
			sizes = append(sizes, n)
		}
	}
	backends := []backend{localBackend(b), startS3(b), startSFTP(b),
		{name: "rest", url: "rest:http://" + restServer(b, b.TempDir()) + "/bench/"}}
	byName := map[string]backend{}
	for _, be := range backends {
		byName[be.name] = be
	}
	copies := [][2]string{{"rest", "s3"}, {"s3", "sftp"}, {"sftp", "local"}}
	srv := newServer(b)
	host := srv.createHost("bench-backends")
	agent := enrollAgent(b, srv, host.EnrollToken, testenv.Restic(b))
	agent.start(b)
	srv.waitOnline(host.ID, true)
	// newRepo makes a repository on a backend and initialises it (with the
	// chunker parameters of chunkerFrom, when given).
	newRepo := func(b *testing.B, be backend, name, chunkerFrom string) string {
		repoID := srv.createRepoEnv(name, strings.TrimSuffix(be.url, "/")+"-"+name, "bench-pw", be.env, host.ID)
		body := map[string]any{"kind": "init", "repo_id": repoID}
		if chunkerFrom != "" {
			body["args"] = map[string]any{"copy_chunker_params_from": chunkerFrom}
		}
		if j := srv.waitJob(srv.createJob(host.ID, body), 2*time.Minute); j.Status != "succeeded" {
			b.Fatalf("%s init: %s: %s %s", be.name, j.Status, j.Error, j.StderrTail)
		}
		return repoID
	}
	// timed runs a job and returns its wall time from the API request to
	// its end.
	timed := func(b *testing.B, what string, body map[string]any) time.Duration {
		t0 := time.Now()
		j := waitJobFast(b, srv, srv.createJob(host.ID, body), 60*time.Minute)
		wall := time.Since(t0)
		if j.Status != "succeeded" {
			b.Fatalf("%s: %s: %s %s", what, j.Status, j.Error, j.StderrTail)
		}
		return wall
	}
	// One sub-benchmark per data set: the testing package keeps only ten
	// lines of a benchmark's log, and a data set prints eight.
	for _, mib := range sizes {
		b.Run(fmt.Sprintf("%dMiB", mib), func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				load0 := benchout.LoadAvg()
				var figs []benchout.Figure
				fig := func(id, what string, rate float64) {
					figs = append(figs, benchout.Figure{ID: fmt.Sprintf("backends.%dMiB.%s", mib, id), Group: benchout.GroupBackends,
						What: fmt.Sprintf("%s, %d MiB", what, mib), Value: rate, Unit: "MiB/s",
						Command: benchout.GoTest("./e2e", "BenchmarkBackends", "1x", "RM_BENCH_NORACE", "RM_BENCH_MIB")})
				}
				data := genDataSet(b, b.TempDir(), 2000, mib<<20)
				size := float64(data.bytes) / (1 << 20)
				b.Logf("data set: %d files, %.1f MiB, written in %s", data.files, size, data.took.Round(time.Millisecond))
				repoOf := map[string]string{}
				for _, be := range backends {
					repoOf[be.name] = newRepo(b, be, fmt.Sprintf("bench-%s-%d-%d", be.name, mib, i), "")
					wall := timed(b, be.name+" backup", map[string]any{"kind": "backup", "repo_id": repoOf[be.name], "args": map[string]any{"paths": []string{data.dir}}})
					rate := size / wall.Seconds()
					b.Logf("%-5s backup of %.0f MiB: %6.1f s, %6.1f MiB/s", be.name, size, wall.Seconds(), rate)
					b.ReportMetric(rate, be.name+"-MiB/s")
					fig(be.name, be.name+" backup through the agent", rate)
				}
				for _, c := range copies {
					from, to := c[0], c[1]
					dst := newRepo(b, byName[to], fmt.Sprintf("bench-copy-%s-%d-%d", from, mib, i), repoOf[from])
					wall := timed(b, "copy "+from+" → "+to, map[string]any{"kind": "copy", "repo_id": repoOf[from], "args": map[string]any{"to_repo_id": dst}})
					rate := size / wall.Seconds()
					b.Logf("copy %-5s → %-5s of %.0f MiB: %6.1f s, %6.1f MiB/s", from, to, size, wall.Seconds(), rate)
					b.ReportMetric(rate, "copy-"+from+"-"+to+"-MiB/s")
					fig("copy-"+from+"-"+to, "copy "+from+" → "+to+" through the agent", rate)
				}
				// rest-server is the backend restic is at home on: the
				// others' backups are read beside it, measured in the same
				// run (loopback, same data set).
				rest := figs[slices.IndexFunc(figs, func(f benchout.Figure) bool { return strings.HasSuffix(f.ID, ".rest") })].Value
				for k := range figs {
					figs[k].Load = benchout.LoadSince(load0)
					if !strings.HasSuffix(figs[k].ID, ".rest") && !strings.Contains(figs[k].ID, ".copy-") {
						figs[k].Reference = &benchout.Reference{What: "rest-server backup", Value: rest, Unit: "MiB/s"}
					}
				}
				if err := benchout.Write(fmt.Sprintf("backends-%dMiB", mib), figs); err != nil {
					b.Error(err)
				}
			}
		})
	}
}
