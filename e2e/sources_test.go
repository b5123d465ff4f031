package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/wire"
)

// addAgentCommands adds hooks and sources to an enrolled agent's
// configuration file, as the machine's administrator would.
func addAgentCommands(t testing.TB, a *agentProc, hooks, sources map[string]any) {
	t.Helper()
	b, err := os.ReadFile(a.Config)
	if err != nil {
		t.Fatal(err)
	}
	cfg := map[string]any{}
	if err := yaml.Unmarshal(b, &cfg); err != nil {
		t.Fatal(err)
	}
	for key, add := range map[string]map[string]any{"hooks": hooks, "sources": sources} {
		m, _ := cfg[key].(map[string]any)
		if m == nil {
			m = map[string]any{}
		}
		for k, v := range add {
			m[k] = v
		}
		if len(m) > 0 {
			cfg[key] = m
		}
	}
	if b, err = yaml.Marshal(cfg); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(a.Config, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// dbAgentCommands are the hooks and sources of docs/databases.md's
// recipes, pointed at the test's private servers, plus the hooks and
// sources that fail on purpose.
func dbAgentCommands(t testing.TB, pg *pgServer, m *mariaServer, dir string) (hooks, sources map[string]any) {
	pgEnv := map[string]string{"PGHOST": pg.Host, "PGPORT": pg.Port, "PGUSER": pg.User, "PGPASSWORD": pg.Password, "PGSSLMODE": "disable"}
	badEnv := map[string]string{"PGHOST": pg.Host, "PGPORT": pg.Port, "PGUSER": pg.User, "PGPASSWORD": "wrong-" + pg.Password, "PGSSLMODE": "disable"}
	opt := m.optionFile(t)
	sources = map[string]any{
		"pg-app": map[string]any{
			"command":  []string{filepath.Join(pg.Bin, "pg_dump"), "--format=custom", "--dbname=app"},
			"filename": "app.dump", "env": pgEnv, "timeout": "10m",
			"restore": []string{filepath.Join(pg.Bin, "pg_restore"), "--clean", "--if-exists", "--dbname=app"},
		},
		"pg-wrong-password": map[string]any{
			"command": []string{filepath.Join(pg.Bin, "pg_dump"), "--format=custom", "--dbname=app"}, "env": badEnv,
		},
		"mariadb-app": map[string]any{
			"command":  []string{m.bins["mariadb-dump"], "--defaults-extra-file=" + opt, "--single-transaction", "--routines", "--events", "--databases", "app"},
			"filename": "app.sql",
			"restore":  []string{m.bins["mariadb"], "--defaults-extra-file=" + opt},
		},
		// Streams forever through a child process that writes its PID.
		"endless": map[string]any{
			"command": []string{"sh", "-c", `sh -c 'while :; do echo row; sleep 0.01; done' & echo $! > ` + filepath.Join(dir, "endless.pid") + `; wait`},
		},
	}
	hooks = map[string]any{
		"record": map[string]any{
			"before":     []string{"sh", "-c", `echo "before $RM_JOB_ID" >> ` + filepath.Join(dir, "hooks.log")},
			"after":      []string{"sh", "-c", `echo "after status=$RM_JOB_STATUS snapshot=$RM_SNAPSHOT_ID" >> ` + filepath.Join(dir, "hooks.log")},
			"on_failure": []string{"sh", "-c", `echo "on_failure $RM_ERROR" >> ` + filepath.Join(dir, "hooks.log")},
		},
		// A drill's probe: load the restored dump into a scratch database
		// and count its rows.
		"pg-probe": map[string]any{
			"after": []string{"sh", "-c", `set -e; db=drill_$$; ` + filepath.Join(pg.Bin, "createdb") + ` "$db"; ` +
				filepath.Join(pg.Bin, "pg_restore") + ` --dbname="$db" "$RM_DRILL_SOURCES_DIR/pg-app/app.dump"; ` +
				`echo "rows=$(` + filepath.Join(pg.Bin, "psql") + ` -XAtq -d "$db" -c 'SELECT count(*) FROM t')"; ` + filepath.Join(pg.Bin, "dropdb") + ` "$db"`},
			"env": pgEnv,
		},
		"refuse": map[string]any{
			"before": []string{"sh", "-c", "echo 'cannot freeze the database: it is busy' >&2; exit 4"},
			"after":  []string{"sh", "-c", `echo "thaw after refuse status=$RM_JOB_STATUS" >> ` + filepath.Join(dir, "hooks.log")},
		},
	}
	return hooks, sources
}

const pgChecksum = `SELECT count(*) || ' ' || sum(id) || ' ' || md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t`
const mariaChecksum = `SELECT CONCAT(COUNT(*), ' ', SUM(id), ' ', MD5(GROUP_CONCAT(id, ':', v ORDER BY id SEPARATOR ','))) FROM t`

// TestDatabaseSources backs real PostgreSQL and MariaDB databases up
// through sources defined in a real agent's configuration, drops them,
// restores the dumps and compares every row; and checks the failures a
// user would meet: a dump with a wrong password, a before hook that
// refuses, a cancel mid-dump.
func TestDatabaseSources(t *testing.T) {
	t.Parallel() // mostly waiting: for the scheduled drill, for the databases
	want := dbWant()
	pg := startPostgres(t)
	pg.createDB(t, "app")
	pg.psql(t, "app", "CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL); "+dbInsert(false))
	m := startMariaDB(t)
	m.sql(t, "", "CREATE DATABASE app CHARACTER SET utf8mb4 COLLATE utf8mb4_bin")
	m.sql(t, "app", "CREATE TABLE t (id int PRIMARY KEY, v text NOT NULL); "+dbInsert(true))
	if got := pg.psql(t, "app", pgChecksum); got != want {
		t.Fatalf("postgres table as written: %q, want %q", got, want)
	}
	if got := m.sql(t, "app", mariaChecksum); got != want {
		t.Fatalf("mariadb table as written: %q, want %q", got, want)
	}

	srv := newServer(t)
	for _, v := range []struct{ name, restic string }{{"restic-0.18.1", testenv.Restic(t)}, {"restic-0.14.0", testenv.Restic014(t)}} {
		t.Run(v.name, func(t *testing.T) {
			testDatabaseSources(t, srv, v.restic, v.name == "restic-0.18.1", pg, m, want)
		})
	}
}

func testDatabaseSources(t *testing.T, srv *server, restic string, full bool, pg *pgServer, m *mariaServer, want string) {
	f := newFleetOn(t, srv, restic)
	dir := t.TempDir()
	hooks, sources := dbAgentCommands(t, pg, m, dir)
	addAgentCommands(t, f.agent, hooks, sources)
	f.agent.start(t)
	f.srv.waitOnline(f.host.ID, true)
	f.initRepo(t)
	hostAPI := f.srv.host(f.host.ID)
	t.Logf("host reports restic %s", hostAPI.ResticVersion)
	// The console knows the names, never the commands.
	if strings.Join(hostAPI.Sources, ",") != "endless,mariadb-app,pg-app,pg-wrong-password" || strings.Join(hostAPI.Hooks, ",") != "pg-probe,record,refuse" ||
		strings.Join(hostAPI.RestoreSources, ",") != "mariadb-app,pg-app" {
		t.Errorf("host reports hooks %v, sources %v, restore sources %v", hostAPI.Hooks, hostAPI.Sources, hostAPI.RestoreSources)
	}

	// 1. Both databases through their sources, with a hook around them.
	id := f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID,
		"args": map[string]any{"sources": []string{"pg-app", "mariadb-app"}, "hooks": []string{"record"}, "tags": []string{"nightly"}}})
	j := f.srv.waitJob(id, 3*time.Minute)
	if j.Status != wire.StatusSucceeded {
		t.Fatalf("source backup: %s: %s\n%s", j.Status, j.Error, j.StderrTail)
	}
	var out wire.BackupOutput
	if err := json.Unmarshal(j.Output, &out); err != nil || len(out.Snapshots) != 2 {
		t.Fatalf("backup output %s: %v", j.Output, err)
	}
	snapOf := map[string]string{}
	for _, s := range out.Snapshots {
		if s.Status != wire.StatusSucceeded || s.SnapshotID == "" || s.Bytes == 0 {
			t.Errorf("source %s: %+v", s.Source, s)
		}
		snapOf[s.Source] = s.SnapshotID
	}
	// restic itself sees one snapshot per source, tagged with it.
	byTag := map[string]resticSnap{}
	for _, s := range resticSnapshots(t, f.repoURL, f.password) {
		byTag[wire.SourceOfTags(s.Tags)] = s
	}
	if s := byTag["pg-app"]; len(s.Paths) != 1 || s.Paths[0] != "/app.dump" || !strings.HasPrefix(snapOf["pg-app"], s.ID[:8]) {
		t.Errorf("pg-app snapshot %+v, job says %s", s, snapOf["pg-app"])
	}
	if s := byTag["mariadb-app"]; len(s.Paths) != 1 || s.Paths[0] != "/app.sql" {
		t.Errorf("mariadb-app snapshot %+v", s)
	}
	log, _ := os.ReadFile(filepath.Join(dir, "hooks.log"))
	if !strings.Contains(string(log), "before "+id) || !strings.Contains(string(log), "after status=succeeded snapshot="+j.SnapshotID) {
		t.Errorf("hooks log %q: want the before hook with the job and the after hook with status and snapshot %s", log, j.SnapshotID)
	}
	if len(j.Hooks) != 2 || j.Hooks[0].Phase != wire.HookBefore || j.Hooks[1].Phase != wire.HookAfter || !j.Hooks[1].OK() {
		t.Errorf("job's hook runs %+v", j.Hooks)
	}

	if full {
		// A drill proves it: the dumps restore, and the probe loads the
		// PostgreSQL one into a scratch database.
		did := f.srv.createJob(f.host.ID, map[string]any{"kind": "drill", "repo_id": f.repoID, "args": map[string]any{"probe": "pg-probe"}})
		dj := f.srv.waitJob(did, 3*time.Minute)
		var dout wire.DrillOutput
		_ = json.Unmarshal(dj.Output, &dout)
		if dj.Status != wire.StatusSucceeded || dout.Probe == nil || !dout.Probe.OK || !strings.Contains(dout.Probe.Output, "rows=1000") {
			t.Fatalf("drill with a probe: %s: %s\noutput %s", dj.Status, dj.Error, dj.Output)
		}
		if len(dout.SourceSnapshots) != 2 || dout.FilesChecked != 2 {
			t.Errorf("drill of the sources: %+v", dout)
		}
		if dbs := pg.psql(t, "postgres", "SELECT count(*) FROM pg_database WHERE datname LIKE 'drill_%'"); dbs != "0" {
			t.Errorf("the probe left %s scratch databases", dbs)
		}

		// 2. The databases are lost; the dumps come back: PostgreSQL's
		// streamed into the source's restore command (pg_restore) on the
		// agent, MariaDB's written to a path and loaded by hand.
		pg.psql(t, "postgres", "DROP DATABASE app")
		pg.createDB(t, "app")
		m.sql(t, "", "DROP DATABASE app")
		rid := f.srv.createJob(f.host.ID, map[string]any{"kind": "restore", "repo_id": f.repoID,
			"args": map[string]any{"snapshot_id": snapOf["pg-app"], "to_source": "pg-app"}})
		if rj := f.srv.waitJob(rid, 2*time.Minute); rj.Status != wire.StatusSucceeded {
			t.Fatalf("restore into pg_restore: %s: %s\n%s", rj.Status, rj.Error, rj.StderrTail)
		}
		if got := pg.psql(t, "app", pgChecksum); got != want {
			t.Fatalf("postgres after drop and restore through pg_restore: %q, want %q", got, want)
		}
		restoreDir := t.TempDir()
		rid = f.srv.createJob(f.host.ID, map[string]any{"kind": "restore", "repo_id": f.repoID,
			"args": map[string]any{"snapshot_id": snapOf["mariadb-app"], "target_path": restoreDir}})
		if rj := f.srv.waitJob(rid, 2*time.Minute); rj.Status != wire.StatusSucceeded {
			t.Fatalf("restore of the dump: %s: %s", rj.Status, rj.Error)
		}
		sqlDump, err := os.ReadFile(filepath.Join(restoreDir, "app.sql"))
		if err != nil {
			t.Fatal(err)
		}
		if _, err := runDB(nil, m.Env(), strings.NewReader(string(sqlDump)), m.bins["mariadb"], m.tcpArgs()...); err != nil {
			t.Fatal(err)
		}
		if got := m.sql(t, "app", mariaChecksum); got != want {
			t.Fatalf("mariadb after drop, restore and load: %q, want %q", got, want)
		}
		// And through its restore command too, over the loaded database.
		m.sql(t, "app", "DELETE FROM t WHERE id < 500")
		rid = f.srv.createJob(f.host.ID, map[string]any{"kind": "restore", "repo_id": f.repoID,
			"args": map[string]any{"snapshot_id": snapOf["mariadb-app"], "to_source": "mariadb-app"}})
		if rj := f.srv.waitJob(rid, 2*time.Minute); rj.Status != wire.StatusSucceeded {
			t.Fatalf("restore into mariadb: %s: %s\n%s", rj.Status, rj.Error, rj.StderrTail)
		}
		if got := m.sql(t, "app", mariaChecksum); got != want {
			t.Fatalf("mariadb after restore through its restore command: %q, want %q", got, want)
		}
	}

	// 3. A dump that cannot log in fails the job with its stderr and
	// leaves no snapshot.
	before := len(resticSnapshots(t, f.repoURL, f.password))
	id = f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID,
		"args": map[string]any{"sources": []string{"pg-wrong-password"}, "hooks": []string{"record"}}})
	j = f.srv.waitJob(id, 3*time.Minute)
	if j.Status != wire.StatusFailed || !strings.Contains(j.Error, "source pg-wrong-password") || !strings.Contains(j.Error, "password authentication failed") {
		t.Fatalf("dump with a wrong password: %s: %q", j.Status, j.Error)
	}
	if n := len(resticSnapshots(t, f.repoURL, f.password)); n != before {
		t.Fatalf("%d snapshots after the failed dump, want %d", n, before)
	}
	log, _ = os.ReadFile(filepath.Join(dir, "hooks.log"))
	if !strings.Contains(string(log), "on_failure source pg-wrong-password") || !strings.Contains(string(log), "after status=failed snapshot=\n") {
		t.Errorf("hooks log %q: want on_failure with the error and after with status failed", log)
	}
	if !full {
		return
	}

	// A hook added to the configuration is reported after a SIGHUP; a
	// broken configuration is refused and the running one stays.
	addAgentCommands(t, f.agent, map[string]any{"late": map[string]any{"after": []string{"true"}}}, nil)
	if err := f.agent.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	eventually(t, 30*time.Second, "the reloaded hook reported", func() error {
		if h := f.srv.host(f.host.ID); !slices.Contains(h.Hooks, "late") || !slices.Contains(h.Hooks, "record") {
			return fmt.Errorf("hooks %v", h.Hooks)
		}
		return nil
	})
	addAgentCommands(t, f.agent, map[string]any{"broken": map[string]any{"before": []string{"/no/such/program"}}}, nil)
	if err := f.agent.Proc.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * time.Second)
	if h := f.srv.host(f.host.ID); slices.Contains(h.Hooks, "broken") || !slices.Contains(h.Hooks, "late") {
		t.Errorf("after a broken reload the host reports %v", h.Hooks)
	}
	if !strings.Contains(f.agent.Proc.Output(), `program \"/no/such/program\"`) && !strings.Contains(f.agent.Proc.Output(), `program "/no/such/program"`) {
		t.Errorf("the agent's log does not say why the reload was refused")
	}

	// 4. A before hook that refuses: restic never starts, the after hook
	// still thaws, the job says why.
	id = f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID,
		"args": map[string]any{"paths": []string{dir}, "hooks": []string{"refuse"}}})
	j = f.srv.waitJob(id, 2*time.Minute)
	if j.Status != wire.StatusFailed || !strings.Contains(j.Error, "before hook refuse failed (exit code 4), restic was not started: cannot freeze the database: it is busy") {
		t.Fatalf("refusing before hook: %s: %q", j.Status, j.Error)
	}
	if j.ExitCode == nil || *j.ExitCode != -1 || !j.StartedAt.IsZero() && j.SnapshotID != "" {
		t.Errorf("restic ran after a failed before hook: exit %v snapshot %q", j.ExitCode, j.SnapshotID)
	}
	if n := len(resticSnapshots(t, f.repoURL, f.password)); n != before {
		t.Fatalf("%d snapshots after the refused backup, want %d", n, before)
	}
	if len(j.Hooks) != 2 || j.Hooks[0].ExitCode != 4 || !strings.Contains(j.Hooks[0].OutputTail, "busy") || j.Hooks[1].Phase != wire.HookAfter {
		t.Errorf("hook runs %+v", j.Hooks)
	}
	log, _ = os.ReadFile(filepath.Join(dir, "hooks.log"))
	if !strings.Contains(string(log), "thaw after refuse status=failed") {
		t.Errorf("hooks log %q lacks the thaw", log)
	}

	// 5. Cancel mid-dump: restic, the dump and the dump's children end.
	id = f.srv.createJob(f.host.ID, map[string]any{"kind": "backup", "repo_id": f.repoID,
		"args": map[string]any{"sources": []string{"endless"}}})
	pidFile := filepath.Join(dir, "endless.pid")
	var child int
	eventually(t, time.Minute, "the endless dump running", func() error {
		b, err := os.ReadFile(pidFile)
		if err != nil {
			return err
		}
		child, err = strconv.Atoi(strings.TrimSpace(string(b)))
		return err
	})
	time.Sleep(time.Second)
	f.srv.do("POST", "/api/v1/jobs/"+id+"/cancel", nil, nil, 200)
	if j := f.srv.waitJob(id, time.Minute); j.Status != wire.StatusCancelled {
		t.Fatalf("cancelled dump: %s: %s", j.Status, j.Error)
	}
	eventually(t, 10*time.Second, "the dump's child gone", func() error {
		if err := syscall.Kill(child, 0); err == syscall.ESRCH {
			return nil
		}
		if b, _ := os.ReadFile("/proc/" + strconv.Itoa(child) + "/stat"); strings.Contains(string(b), ") Z ") {
			return nil
		}
		return os.ErrExist
	})
	if n := len(resticSnapshots(t, f.repoURL, f.password)); n != before {
		t.Fatalf("%d snapshots after the cancelled dump, want %d", n, before)
	}
}
