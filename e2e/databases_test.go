package e2e

import (
	"bytes"
	"crypto/md5"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
)

// The helpers here run private, throw-away PostgreSQL and MariaDB servers
// (Debian's packages, installed by `make databases`) for tests of database
// sources: each lives in its own temporary directory on a free loopback
// port and a private socket, and is stopped when the test ends. The
// system's own services and default ports are never touched.

// dbStartTimeout bounds how long a server may take to accept connections.
const dbStartTimeout = 60 * time.Second

// dbProc is a database server process the test owns.
type dbProc struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
}

// startDBProc starts bin with its output in log, as cred's user when cred
// is set, in its own process group so that a hung server is killed with
// every process it forked.
func startDBProc(name, log string, cred *syscall.Credential, env []string, bin string, args ...string) (*dbProc, error) {
	f, err := os.Create(log)
	if err != nil {
		return nil, err
	}
	defer f.Close() // the child has its own copy
	p := &dbProc{name: name, log: log, done: make(chan struct{})}
	p.cmd = exec.Command(bin, args...)
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = f, f
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Credential: cred}
	if err := p.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go func() {
		_ = p.cmd.Wait()
		close(p.done)
	}()
	return p, nil
}

// output is the server's log so far.
func (p *dbProc) output() string {
	b, _ := os.ReadFile(p.log)
	return string(b)
}

// exited says whether the server has ended.
func (p *dbProc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// stop asks the server to shut down with sig and waits; one still running
// after 30s is killed with its process group, and the test fails: a server
// that cannot stop is a defect the test should show.
func (p *dbProc) stop(t testing.TB, sig syscall.Signal) {
	t.Helper()
	_ = p.cmd.Process.Signal(sig)
	select {
	case <-p.done:
	case <-time.After(30 * time.Second):
		_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
		<-p.done
		t.Errorf("%s did not stop within 30s of %v (killed)", p.name, sig)
	}
	if t.Failed() {
		t.Logf("---- %s log ----\n%s", p.name, p.output())
	}
}

// dbDir makes a private directory for a server under os.TempDir() and
// removes it when the test ends. It is 0755, unlike t.TempDir()'s 0700
// parents, because PostgreSQL refuses to run as root and its own user must
// reach the data directory inside (which is 0700 itself).
func dbDir(t testing.TB, prefix string) string {
	t.Helper()
	dir, err := os.MkdirTemp("", prefix)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// Every parent must be searchable by others too (TMPDIR may point
	// somewhere private).
	for p := filepath.Dir(dir); ; p = filepath.Dir(p) {
		st, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm()&0o001 == 0 {
			t.Fatalf("%s is not searchable by other users, so a database server running as its own user cannot reach %s: set TMPDIR to a directory that is (such as /tmp)", p, dir)
		}
		if p == filepath.Dir(p) {
			break
		}
	}
	return dir
}

// dbEnv is this process's environment without the variables that would
// point a client or server elsewhere (a developer's PGHOST, MYSQL_PWD...),
// plus extra (which wins: os/exec keeps the last of duplicate keys).
func dbEnv(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if strings.HasPrefix(k, "PG") || strings.HasPrefix(k, "MYSQL") || strings.HasPrefix(k, "MARIADB") {
			continue
		}
		env = append(env, kv)
	}
	return append(env, extra...)
}

// runDB runs a client program and returns its standard output; the error
// carries its standard error.
func runDB(cred *syscall.Credential, env []string, stdin io.Reader, bin string, args ...string) (string, error) {
	cmd := exec.Command(bin, args...)
	cmd.Env = env
	cmd.Stdin = stdin
	if cred != nil {
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: cred}
	}
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, stderr.String())
	}
	return stdout.String(), nil
}

// dbPassword is a random password: hex, so it needs no quoting anywhere.
func dbPassword(t testing.TB) string {
	t.Helper()
	b := make([]byte, 16)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// waitDB polls ready until it succeeds, the server exits or the deadline
// passes; the error then carries the last attempt's error.
func waitDB(p *dbProc, ready func() error) error {
	deadline := time.Now().Add(dbStartTimeout)
	for {
		err := ready()
		if err == nil {
			return nil
		}
		if p.exited() {
			return fmt.Errorf("%s exited before accepting connections:\n%s", p.name, p.output())
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s not accepting connections after %s: %v", p.name, dbStartTimeout, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// ---- PostgreSQL ----

// pgServer is a private PostgreSQL cluster. Its superuser role is named
// after the OS user the server runs as ("postgres" when the test runs as
// root), like Debian's own cluster: on the socket it authenticates by peer
// (the OS user), on TCP by password (SCRAM), so a wrong password fails.
type pgServer struct {
	Host      string // 127.0.0.1
	Port      string
	SocketDir string // PGHOST for socket connections
	User      string // superuser role
	Password  string
	Bin       string // the directory of the server and client programs
	// OSUser runs the server; cred switches to it (nil: the test's own
	// user, which is not root).
	OSUser string
	cred   *syscall.Credential
	dir    string
	proc   *dbProc
}

// pgBin finds the directory of PostgreSQL's programs: RM_TEST_PG_BIN, the
// directory of an initdb on PATH, or Debian's /usr/lib/postgresql/N/bin
// with the highest N (so no major version is written here).
func pgBin(t testing.TB) string {
	t.Helper()
	has := func(dir string) bool {
		for _, p := range []string{"initdb", "postgres", "psql", "pg_dump", "pg_restore", "pg_dumpall"} {
			if _, err := os.Stat(filepath.Join(dir, p)); err != nil {
				return false
			}
		}
		return true
	}
	if d := os.Getenv("RM_TEST_PG_BIN"); d != "" {
		if !has(d) {
			t.Fatalf("RM_TEST_PG_BIN=%s lacks initdb, postgres or the clients", d)
		}
		return d
	}
	if p, err := exec.LookPath("initdb"); err == nil && has(filepath.Dir(p)) {
		return filepath.Dir(p)
	}
	dirs, _ := filepath.Glob("/usr/lib/postgresql/*/bin")
	sort.Slice(dirs, func(i, j int) bool {
		vi, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[i])))
		vj, _ := strconv.Atoi(filepath.Base(filepath.Dir(dirs[j])))
		return vi > vj
	})
	for _, d := range dirs {
		if has(d) {
			return d
		}
	}
	t.Fatal("PostgreSQL is not installed (no initdb/postgres in RM_TEST_PG_BIN, on PATH or in /usr/lib/postgresql/*/bin): run `make databases` as root")
	return ""
}

// serverUser is the OS user a database server that refuses root runs as:
// the test's own user, or name when the test runs as root.
func serverUser(t testing.TB, name string) (string, *syscall.Credential) {
	t.Helper()
	if os.Geteuid() != 0 {
		u, err := user.Current()
		if err != nil {
			t.Fatal(err)
		}
		return u.Username, nil
	}
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatalf("running as root, the database server needs the OS user %q (the package creates it; run `make databases`): %v", name, err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	// No Groups: the child drops root's supplementary groups.
	return name, &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}
}

// chownTo gives paths to cred's user (nothing to do without cred).
func chownTo(t testing.TB, cred *syscall.Credential, paths ...string) {
	t.Helper()
	if cred == nil {
		return
	}
	for _, p := range paths {
		if err := os.Chown(p, int(cred.Uid), int(cred.Gid)); err != nil {
			t.Fatal(err)
		}
	}
}

// startPostgres initdbs a cluster in a private directory and starts it on
// a free loopback port and a socket in that directory, until the test ends.
func startPostgres(t testing.TB) *pgServer {
	t.Helper()
	s := &pgServer{Host: "127.0.0.1", Bin: pgBin(t), Password: dbPassword(t)}
	s.OSUser, s.cred = serverUser(t, "postgres")
	s.User = s.OSUser
	s.dir = dbDir(t, "rm-pg-")
	data := filepath.Join(s.dir, "data")
	s.SocketDir = filepath.Join(s.dir, "sock")
	pwfile := filepath.Join(s.dir, "pwfile")
	// The socket directory is the server user's alone: peer auth says
	// who connects, the directory says who may try.
	for _, d := range []string{data, s.SocketDir} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(pwfile, []byte(s.Password+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	chownTo(t, s.cred, data, s.SocketDir, pwfile)
	out, err := runDB(s.cred, dbEnv("HOME="+s.dir, "LC_ALL=C"), nil, filepath.Join(s.Bin, "initdb"),
		"--pgdata="+data, "--username="+s.User, "--pwfile="+pwfile,
		"--auth-local=peer", "--auth-host=scram-sha-256", "--encoding=UTF8", "--no-locale", "--no-sync")
	if err != nil {
		t.Fatalf("initdb: %v\n%s", err, out)
	}
	_ = os.Remove(pwfile)

	// FreePort releases the port before the server binds it, so another
	// process can take it in between: try again on a new port then.
	for attempt := 1; ; attempt++ {
		s.Port = strings.TrimPrefix(testenv.FreePort(t), "127.0.0.1:")
		err := s.start(t, data, attempt)
		if err == nil {
			return s
		}
		if attempt == 5 || !strings.Contains(err.Error(), "Address already in use") {
			t.Fatal(err)
		}
		t.Logf("postgres attempt %d: %v", attempt, err)
	}
}

// start runs the server on s.Port until it accepts a password login on
// TCP; an error carries the server's log.
func (s *pgServer) start(t testing.TB, data string, attempt int) error {
	t.Helper()
	log := filepath.Join(s.dir, fmt.Sprintf("postgres-%d.log", attempt))
	p, err := startDBProc("postgres", log, s.cred, dbEnv("HOME="+s.dir, "LC_ALL=C"), filepath.Join(s.Bin, "postgres"),
		"-D", data, "-p", s.Port, "-k", s.SocketDir,
		"-c", "listen_addresses="+s.Host, "-c", "fsync=off", "-c", "synchronous_commit=off",
		"-c", "full_page_writes=off", "-c", "shared_buffers=16MB", "-c", "max_connections=20")
	if err != nil {
		return err
	}
	if err := waitDB(p, func() error {
		_, err := s.client("psql", s.Env(), nil, "-XAtq", "--dbname=postgres", "--command=SELECT 1")
		return err
	}); err != nil {
		// A server that exited is gone; one that hangs is stopped here.
		p.stop(t, syscall.SIGQUIT)
		return err
	}
	s.proc = p
	// SIGINT is PostgreSQL's fast shutdown: it ends the sessions and
	// checkpoints, where SIGTERM would wait for clients to leave.
	t.Cleanup(func() { p.stop(t, syscall.SIGINT) })
	return nil
}

// Env is a libpq environment that logs in as the superuser on TCP with
// the password (append PGPASSWORD=wrong for a login that fails).
func (s *pgServer) Env() []string {
	return dbEnv("PGHOST="+s.Host, "PGPORT="+s.Port, "PGUSER="+s.User, "PGPASSWORD="+s.Password,
		"PGCONNECT_TIMEOUT=5", "PGSSLMODE=disable")
}

// SocketEnv is a libpq environment for the socket, where the server user
// logs in by peer authentication, without any password (Debian's default
// for the postgres user; run the program with s.cred).
func (s *pgServer) SocketEnv() []string {
	return dbEnv("PGHOST="+s.SocketDir, "PGPORT="+s.Port, "HOME="+s.dir, "PGCONNECT_TIMEOUT=5")
}

// client runs one of the cluster's programs (psql, pg_dump...) as the
// test's own user: it logs in on TCP, where the OS user does not matter,
// and can read and write the test's private files.
func (s *pgServer) client(name string, env []string, stdin io.Reader, args ...string) (string, error) {
	return runDB(nil, env, stdin, filepath.Join(s.Bin, name), args...)
}

// asServerUser runs one of the cluster's programs as the server's OS user
// (for peer authentication on the socket).
func (s *pgServer) asServerUser(name string, env []string, stdin io.Reader, args ...string) (string, error) {
	return runDB(s.cred, env, stdin, filepath.Join(s.Bin, name), args...)
}

// psql runs sql in database db as the superuser and returns the output,
// unaligned and without headers, trimmed; an error fails the test.
func (s *pgServer) psql(t testing.TB, db, sql string) string {
	t.Helper()
	out, err := s.client("psql", s.Env(), nil, "-XAtq", "--set=ON_ERROR_STOP=1", "--dbname="+db, "--command="+sql)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// createDB creates an empty database.
func (s *pgServer) createDB(t testing.TB, name string) {
	t.Helper()
	s.psql(t, "postgres", "CREATE DATABASE "+pgIdent(name)+" TEMPLATE template0")
}

// pgIdent quotes a PostgreSQL identifier.
func pgIdent(s string) string { return `"` + strings.ReplaceAll(s, `"`, `""`) + `"` }

// ---- MariaDB ----

// mariaServer is a private MariaDB server. User (not root: root keeps its
// socket-only empty password from the bootstrap, reachable only through
// the private socket) logs in with Password on TCP and on the socket.
type mariaServer struct {
	Host     string // 127.0.0.1
	Port     string
	Socket   string
	User     string
	Password string
	dir      string
	proc     *dbProc
	bins     map[string]string // program name -> path
}

// mariaBins finds MariaDB's programs (on PATH, or /usr/sbin for the
// server, which is not on every PATH).
func mariaBins(t testing.TB) map[string]string {
	t.Helper()
	bins := map[string]string{}
	for _, name := range []string{"mariadbd", "mariadb-install-db", "mariadb", "mariadb-dump", "mariadb-admin"} {
		p, err := exec.LookPath(name)
		if err != nil {
			for _, dir := range []string{"/usr/sbin", "/usr/local/sbin", "/usr/bin"} {
				if _, err2 := os.Stat(filepath.Join(dir, name)); err2 == nil {
					p, err = filepath.Join(dir, name), nil
					break
				}
			}
		}
		if err != nil {
			t.Fatalf("MariaDB's %s is not installed: run `make databases` as root: %v", name, err)
		}
		bins[name] = p
	}
	return bins
}

// startMariaDB bootstraps a data directory in a private directory and
// starts mariadbd on a free loopback port and a socket there, until the
// test ends.
func startMariaDB(t testing.TB) *mariaServer {
	t.Helper()
	s := &mariaServer{Host: "127.0.0.1", User: "rmtest", Password: dbPassword(t), bins: mariaBins(t)}
	s.dir = dbDir(t, "rm-mariadb-")
	data := filepath.Join(s.dir, "data")
	s.Socket = filepath.Join(s.dir, "mariadb.sock")
	// As root the server runs as root, which it allows only when told so;
	// the files are then the test's own.
	var asUser []string
	if os.Geteuid() == 0 {
		asUser = []string{"--user=root"}
	}
	args := append([]string{"--no-defaults", "--auth-root-authentication-method=normal", "--datadir=" + data,
		"--skip-test-db", "--skip-name-resolve"}, asUser...)
	if out, err := runDB(nil, dbEnv("HOME="+s.dir), nil, s.bins["mariadb-install-db"], args...); err != nil {
		t.Fatalf("mariadb-install-db: %v\n%s", err, out)
	}
	for attempt := 1; ; attempt++ {
		s.Port = strings.TrimPrefix(testenv.FreePort(t), "127.0.0.1:")
		err := s.start(t, data, asUser, attempt)
		if err == nil {
			break
		}
		if attempt == 5 || !strings.Contains(err.Error(), "Address already in use") {
			t.Fatal(err)
		}
		t.Logf("mariadbd attempt %d: %v", attempt, err)
	}
	// The bootstrap's root has an empty password (on the private socket
	// only); the test's user has a real one, from the socket and TCP,
	// and the anonymous accounts, which would shadow it on the socket, go.
	setup := fmt.Sprintf(`CREATE USER '%[1]s'@'localhost' IDENTIFIED BY '%[2]s';
CREATE USER '%[1]s'@'127.0.0.1' IDENTIFIED BY '%[2]s';
GRANT ALL PRIVILEGES ON *.* TO '%[1]s'@'localhost' WITH GRANT OPTION;
GRANT ALL PRIVILEGES ON *.* TO '%[1]s'@'127.0.0.1' WITH GRANT OPTION;
DELETE FROM mysql.global_priv WHERE User = '';
FLUSH PRIVILEGES;`, s.User, s.Password)
	if _, err := runDB(nil, dbEnv(), nil, s.bins["mariadb"], "--no-defaults", "--socket="+s.Socket, "--user=root", "--batch", "--execute="+setup); err != nil {
		t.Fatalf("MariaDB user setup: %v\n%s", err, s.proc.output())
	}
	return s
}

// start runs mariadbd on s.Port until root logs in on the socket; an
// error carries the server's log.
func (s *mariaServer) start(t testing.TB, data string, asUser []string, attempt int) error {
	t.Helper()
	log := filepath.Join(s.dir, fmt.Sprintf("mariadbd-%d.log", attempt))
	// Without --log-error the server logs to stderr, which is log.
	args := append([]string{"--no-defaults", "--datadir=" + data, "--socket=" + s.Socket, "--port=" + s.Port,
		"--bind-address=" + s.Host, "--skip-networking=0", "--skip-name-resolve",
		"--pid-file=" + filepath.Join(s.dir, "mariadbd.pid"), "--tmpdir=" + s.dir,
		"--innodb-buffer-pool-size=16M", "--innodb-log-file-size=16M", "--innodb-flush-log-at-trx-commit=0",
		"--character-set-server=utf8mb4", "--collation-server=utf8mb4_bin"}, asUser...)
	p, err := startDBProc("mariadbd", log, nil, dbEnv("HOME="+s.dir), s.bins["mariadbd"], args...)
	if err != nil {
		return err
	}
	if err := waitDB(p, func() error {
		_, err := runDB(nil, dbEnv(), nil, s.bins["mariadb"], "--no-defaults", "--socket="+s.Socket, "--user=root",
			"--connect-timeout=5", "--batch", "--execute=SELECT 1")
		return err
	}); err != nil {
		p.stop(t, syscall.SIGKILL)
		return err
	}
	s.proc = p
	// SIGTERM is mariadbd's normal shutdown.
	t.Cleanup(func() { p.stop(t, syscall.SIGTERM) })
	return nil
}

// Env carries the password for MariaDB's clients: MYSQL_PWD, never argv,
// where any user could read it in ps (append MYSQL_PWD=wrong for a login
// that fails).
func (s *mariaServer) Env() []string {
	return dbEnv("MYSQL_PWD="+s.Password, "HOME="+s.dir)
}

// tcpArgs are the client options to log in on TCP as s.User (with
// --no-defaults first, as the client requires, so no option file of the
// machine's interferes).
func (s *mariaServer) tcpArgs() []string {
	return []string{"--no-defaults", "--protocol=TCP", "--host=" + s.Host, "--port=" + s.Port, "--user=" + s.User,
		"--connect-timeout=5", "--default-character-set=utf8mb4"}
}

// sql runs sql in database db ("" for none) and returns the output
// (tab-separated, no column names), trimmed; an error fails the test.
func (s *mariaServer) sql(t testing.TB, db, sql string) string {
	t.Helper()
	args := append(s.tcpArgs(), "--batch", "--skip-column-names", "--execute="+sql)
	if db != "" {
		args = append(args, "--database="+db)
	}
	out, err := runDB(nil, s.Env(), nil, s.bins["mariadb"], args...)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

// optionFile writes a client option file with s.User's credentials and
// the TCP address (the recipes' --defaults-extra-file) and returns its
// path. The password is in a 0600 file, never on a command line.
func (s *mariaServer) optionFile(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "backup.cnf")
	conf := fmt.Sprintf("[client]\nuser=%s\npassword=%s\nhost=%s\nport=%s\nprotocol=TCP\ndefault-character-set=utf8mb4\n",
		s.User, s.Password, s.Host, s.Port)
	if err := os.WriteFile(p, []byte(conf), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// ---- the recipes of docs/databases.md ----

// dbRows is the number of rows of the test table.
const dbRows = 1000

// dbRowValue is row i's text: quotes, a backslash, a tab and non-ASCII
// letters, which a dump has to escape and a restore to read back.
func dbRowValue(i int) string {
	return fmt.Sprintf("row %d: it's \"quoted\" \\ back\tslash, ünï €%d", i, i*i)
}

// dbWant is the checksum every database must report for the table: the
// row count, sum(id) and the MD5 of "id:value" of all rows in id order
// joined by commas.
func dbWant() string {
	var parts []string
	sum := 0
	for i := 1; i <= dbRows; i++ {
		parts = append(parts, fmt.Sprintf("%d:%s", i, dbRowValue(i)))
		sum += i
	}
	h := md5.Sum([]byte(strings.Join(parts, ",")))
	return fmt.Sprintf("%d %d %s", dbRows, sum, hex.EncodeToString(h[:]))
}

// dbInsert is an INSERT of all rows into t(id, v); backslashEscapes says
// whether the dialect reads backslashes in string literals (MariaDB does).
func dbInsert(backslashEscapes bool) string {
	var b strings.Builder
	b.WriteString("INSERT INTO t (id, v) VALUES ")
	for i := 1; i <= dbRows; i++ {
		v := dbRowValue(i)
		if backslashEscapes {
			v = strings.ReplaceAll(v, `\`, `\\`)
		}
		if i > 1 {
			b.WriteString(", ")
		}
		fmt.Fprintf(&b, "(%d, '%s')", i, strings.ReplaceAll(v, "'", "''"))
	}
	return b.String()
}

// TestDatabaseServers starts private PostgreSQL and MariaDB servers, fills
// a table of known rows and round-trips it through the exact commands of
// docs/databases.md's recipes (keep the two in step), comparing checksums.
func TestDatabaseServers(t *testing.T) {
	want := dbWant()
	t.Run("PostgreSQL", func(t *testing.T) {
		t.Parallel()
		testPostgresRecipes(t, want)
	})
	t.Run("MariaDB", func(t *testing.T) {
		t.Parallel()
		testMariaDBRecipes(t, want)
	})
	t.Run("SQLite", func(t *testing.T) {
		t.Parallel()
		testSQLiteRecipes(t, want)
	})
}

func testPostgresRecipes(t *testing.T, want string) {
	pg := startPostgres(t)
	const sum = `SELECT count(*) || ' ' || sum(id) || ' ' || md5(string_agg(id || ':' || v, ',' ORDER BY id)) FROM t`
	pg.createDB(t, "app")
	pg.psql(t, "app", "CREATE TABLE t (id integer PRIMARY KEY, v text NOT NULL); "+dbInsert(false))
	if got := pg.psql(t, "app", sum); got != want {
		t.Fatalf("table as written: %q, want %q", got, want)
	}

	// A wrong password is refused on TCP (the failing login source tests
	// rely on).
	if out, err := pg.client("psql", append(pg.Env(), "PGPASSWORD=wrong-"+pg.Password), nil, "-XAtq", "--dbname=app", "--command=SELECT 1"); err == nil || !strings.Contains(err.Error(), "password authentication failed") {
		t.Fatalf("psql with a wrong password: %v %q, want password authentication failed", err, out)
	}

	// Recipe pg-app: custom format, run as the server's OS user with peer
	// authentication on the socket (PGHOST/PGPORT only point at this
	// private cluster; Debian's defaults need neither).
	dump, err := pg.asServerUser("pg_dump", pg.SocketEnv(), nil, "--format=custom", "--dbname=app")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(dump, "PGDMP") {
		t.Fatalf("pg_dump --format=custom wrote %q..., want the PGDMP archive header", dump[:min(len(dump), 20)])
	}
	// Into a fresh database (docs: restore into another database)...
	pg.createDB(t, "app_copy")
	if _, err := pg.asServerUser("pg_restore", pg.SocketEnv(), strings.NewReader(dump), "--dbname=app_copy"); err != nil {
		t.Fatal(err)
	}
	if got := pg.psql(t, "app_copy", sum); got != want {
		t.Fatalf("pg_restore into a fresh database: %q, want %q", got, want)
	}
	// ...and through the recipe's restore command over the damaged original.
	pg.psql(t, "app", "DELETE FROM t WHERE id % 3 = 0; UPDATE t SET v = 'changed' WHERE id < 10")
	if _, err := pg.asServerUser("pg_restore", pg.SocketEnv(), strings.NewReader(dump), "--clean", "--if-exists", "--dbname=app"); err != nil {
		t.Fatal(err)
	}
	if got := pg.psql(t, "app", sum); got != want {
		t.Fatalf("recipe restore over the original: %q, want %q", got, want)
	}

	// Recipe pg-app-sql: plain SQL over TCP, the password in a pgpass file
	// named by the source's env; restored with psql into an empty database.
	pgpass := filepath.Join(t.TempDir(), "pgpass")
	if err := os.WriteFile(pgpass, []byte(fmt.Sprintf("%s:%s:*:%s:%s\n", pg.Host, pg.Port, pg.User, pg.Password)), 0o600); err != nil {
		t.Fatal(err)
	}
	passEnv := dbEnv("PGHOST="+pg.Host, "PGPORT="+pg.Port, "PGUSER="+pg.User, "PGPASSFILE="+pgpass)
	sqlDump, err := pg.client("pg_dump", passEnv, nil, "--dbname=app")
	if err != nil {
		t.Fatal(err)
	}
	pg.createDB(t, "app_sql")
	if _, err := pg.client("psql", passEnv, strings.NewReader(sqlDump), "--no-psqlrc", "--set=ON_ERROR_STOP=1", "--single-transaction", "--dbname=app_sql"); err != nil {
		t.Fatal(err)
	}
	if got := pg.psql(t, "app_sql", sum); got != want {
		t.Fatalf("plain pg_dump | psql: %q, want %q", got, want)
	}

	// Recipe pg-all: pg_dumpall as the server's OS user, restored into a
	// new, empty cluster with psql.
	all, err := pg.asServerUser("pg_dumpall", pg.SocketEnv(), nil)
	if err != nil {
		t.Fatal(err)
	}
	pg2 := startPostgres(t)
	if _, err := pg2.asServerUser("psql", pg2.SocketEnv(), strings.NewReader(all), "--no-psqlrc", "--dbname=postgres"); err != nil {
		t.Fatal(err)
	}
	// The roles came along: the superuser now has the first cluster's
	// password on the new one.
	pg2.Password = pg.Password
	for _, db := range []string{"app", "app_copy", "app_sql"} {
		if got := pg2.psql(t, db, sum); got != want {
			t.Fatalf("pg_dumpall | psql, database %s: %q, want %q", db, got, want)
		}
	}
}

func testMariaDBRecipes(t *testing.T, want string) {
	m := startMariaDB(t)
	const sum = `SELECT CONCAT(COUNT(*), ' ', SUM(id), ' ', MD5(GROUP_CONCAT(id, ':', v ORDER BY id SEPARATOR ','))) FROM t`
	m.sql(t, "", "CREATE DATABASE app")
	m.sql(t, "app", "CREATE TABLE t (id INT PRIMARY KEY, v TEXT NOT NULL) ENGINE=InnoDB DEFAULT CHARSET=utf8mb4; "+dbInsert(true)+
		"; CREATE FUNCTION twice(x INT) RETURNS INT DETERMINISTIC RETURN x * 2")
	if got := m.sql(t, "app", sum); got != want {
		t.Fatalf("table as written: %q, want %q", got, want)
	}

	if out, err := runDB(nil, append(m.Env(), "MYSQL_PWD=wrong-"+m.Password), nil, m.bins["mariadb"], append(m.tcpArgs(), "--execute=SELECT 1")...); err == nil || !strings.Contains(err.Error(), "Access denied") {
		t.Fatalf("mariadb with a wrong password: %v %q, want Access denied", err, out)
	}

	// Recipe mariadb-app: the credentials in an option file; the dump
	// names no database, so it restores into whichever the restore
	// command names.
	cnf := "--defaults-extra-file=" + m.optionFile(t)
	env := dbEnv("HOME=" + t.TempDir())
	dump, err := runDB(nil, env, nil, m.bins["mariadb-dump"], cnf, "--single-transaction", "--routines", "--events", "app")
	if err != nil {
		t.Fatal(err)
	}
	m.sql(t, "", "CREATE DATABASE app_copy")
	if _, err := runDB(nil, env, strings.NewReader(dump), m.bins["mariadb"], cnf, "app_copy"); err != nil {
		t.Fatal(err)
	}
	if got := m.sql(t, "app_copy", sum); got != want {
		t.Fatalf("mariadb-dump | mariadb into a fresh database: %q, want %q", got, want)
	}
	if got := m.sql(t, "app_copy", "SELECT twice(21)"); got != "42" {
		t.Fatalf("the function came back as twice(21) = %q", got)
	}
	// The recipe's restore command over the damaged original.
	m.sql(t, "app", "DELETE FROM t WHERE id % 3 = 0; UPDATE t SET v = 'changed' WHERE id < 10; DROP FUNCTION twice")
	if _, err := runDB(nil, env, strings.NewReader(dump), m.bins["mariadb"], cnf, "app"); err != nil {
		t.Fatal(err)
	}
	if got := m.sql(t, "app", sum+"; SELECT twice(21)"); got != want+"\n42" {
		t.Fatalf("recipe restore over the original: %q, want %q", got, want+"\n42")
	}
}

func testSQLiteRecipes(t *testing.T, want string) {
	bin, err := exec.LookPath("sqlite3")
	if err != nil {
		t.Fatalf("sqlite3 is not installed: run `make databases` as root: %v", err)
	}
	dir := t.TempDir()
	db := filepath.Join(dir, "app.sqlite")
	sqlite := func(stdin io.Reader, args ...string) string {
		t.Helper()
		out, err := runDB(nil, dbEnv("HOME="+dir), stdin, bin, args...)
		if err != nil {
			t.Fatal(err)
		}
		return strings.TrimSpace(out)
	}
	// sum is computed here: sqlite3 has no md5.
	sum := func(path string) string {
		t.Helper()
		counts := sqlite(nil, path, "SELECT count(*) || ' ' || sum(id) FROM t")
		rows := sqlite(nil, path, "SELECT group_concat(id || ':' || v, ',') FROM (SELECT id, v FROM t ORDER BY id)")
		h := md5.Sum([]byte(rows))
		return counts + " " + hex.EncodeToString(h[:])
	}
	sqlite(nil, db, "PRAGMA journal_mode=WAL; CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT NOT NULL); "+dbInsert(false))
	if got := sum(db); got != want {
		t.Fatalf("table as written: %q, want %q", got, want)
	}

	// Recipe app-sqlite: .dump to stdout, restored by sqlite3 reading it
	// into a new file.
	dump := sqlite(nil, db, ".dump")
	restored := filepath.Join(dir, "restored.sqlite")
	sqlite(strings.NewReader(dump), "-bail", restored)
	if got := sum(restored); got != want {
		t.Fatalf(".dump | sqlite3: %q, want %q", got, want)
	}

	// Recipe app-sqlite-copy: a before hook's .backup into a file the
	// job's paths include.
	copyPath := filepath.Join(dir, "backup", "app.sqlite")
	if err := os.Mkdir(filepath.Dir(copyPath), 0o700); err != nil {
		t.Fatal(err)
	}
	sqlite(nil, db, ".backup "+copyPath)
	if got := sum(copyPath); got != want {
		t.Fatalf(".backup: %q, want %q", got, want)
	}

	// Why not ".backup /dev/stdout": the backup API needs a file it can
	// seek in, and a source's standard output is a pipe.
	cmd := exec.Command(bin, db, ".backup /dev/stdout")
	cmd.Env = dbEnv("HOME=" + dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	piped, _ := io.ReadAll(out)
	if err := cmd.Wait(); err == nil && len(piped) > 0 {
		t.Fatalf(".backup /dev/stdout into a pipe succeeded (%d bytes): docs/databases.md says it fails", len(piped))
	}
}
