package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/eclipse/paho.golang/paho"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/internal/tlsutil"
	"github.com/restic-manager/restic-manager/wire"
)

// brokerMode picks the broker a test's server uses.
type brokerMode int

const (
	embeddedBroker brokerMode = iota
	mosquittoBroker
)

func (m brokerMode) server(t testing.TB) *server {
	t.Helper()
	if m == mosquittoBroker {
		return newMosquittoServer(t)
	}
	return newServer(t)
}

// mosquitto is a Mosquitto 2 process (Debian's package, installed by
// `make mosquitto`) whose password and ACL files the console writes.
type mosquitto struct {
	addr    string
	authDir string
	pidFile string
	proc    *harness.Proc
}

// startMosquitto runs Mosquitto with TLS from the console's CA in
// data/tls (created here first, as the server would), so agents that pin
// that CA trust it.
func startMosquitto(t testing.TB, data string) *mosquitto {
	t.Helper()
	bin, err := testenv.MosquittoBin()
	if err != nil {
		t.Fatal(err)
	}
	tlsDir := filepath.Join(data, "tls")
	if _, err := tlsutil.LoadOrCreate(tlsDir, []string{"localhost", "127.0.0.1", "::1"}); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	m := &mosquitto{authDir: filepath.Join(dir, "auth"), pidFile: filepath.Join(dir, "mosquitto.pid")}
	if err := os.MkdirAll(m.authDir, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, f := range []string{"passwd", "acl"} {
		if err := os.WriteFile(filepath.Join(m.authDir, f), nil, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	// The chain file carries the CA after the leaf: pinning clients look
	// for the CA in the chain the server presents.
	leaf, err1 := os.ReadFile(filepath.Join(tlsDir, "server.pem"))
	ca, err2 := os.ReadFile(filepath.Join(tlsDir, "ca.pem"))
	if err1 != nil || err2 != nil {
		t.Fatal(err1, err2)
	}
	chain := filepath.Join(dir, "chain.pem")
	if err := os.WriteFile(chain, append(append(leaf, '\n'), ca...), 0o600); err != nil {
		t.Fatal(err)
	}
	// FreePort releases the port before Mosquitto binds it, so a package
	// running in parallel can take it in between (seen once in CI as
	// "Address already in use"): try again on a new port then.
	for attempt := 1; ; attempt++ {
		m.addr = testenv.FreePort(t)
		err := m.start(t, bin, dir, tlsDir, chain)
		if err == nil {
			return m
		}
		if attempt == 5 || !strings.Contains(err.Error(), "Address already in use") {
			t.Fatal(err)
		}
		t.Logf("mosquitto attempt %d: %v", attempt, err)
	}
}

// start writes the configuration for m.addr and runs Mosquitto until it
// listens; an error carries Mosquitto's output when it exited.
func (m *mosquitto) start(t testing.TB, bin, dir, tlsDir, chain string) error {
	t.Helper()
	conf, err := testenv.MosquittoConf(testenv.MosquittoConfig{AuthDir: m.authDir, PersistDir: dir, Addr: m.addr,
		CertFile: chain, KeyFile: filepath.Join(tlsDir, "server.key"), Notices: true})
	if err != nil {
		return err
	}
	confPath := filepath.Join(dir, "mosquitto.conf")
	if err := os.WriteFile(confPath, []byte(conf), 0o600); err != nil {
		return err
	}
	m.proc = start(t, "mosquitto", nil, bin, "-c", confPath)
	if err := os.WriteFile(m.pidFile, []byte(fmt.Sprint(m.proc.Pid())), 0o600); err != nil {
		return err
	}
	// Mosquitto must have its SIGHUP handler before the console reloads it.
	deadline := time.Now().Add(20 * time.Second)
	for {
		select {
		case <-m.proc.Done():
			return fmt.Errorf("mosquitto exited:\n%s", m.proc.Output())
		default:
		}
		c, err := net.DialTimeout("tcp", m.addr, time.Second)
		if err == nil {
			return c.Close()
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("mosquitto not listening on %s after 20s: %w", m.addr, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// newMosquittoServer starts Mosquitto and a console that uses it as its
// external broker.
func newMosquittoServer(t testing.TB) *server {
	t.Helper()
	data := t.TempDir()
	m := startMosquitto(t, data)
	// The server does not listen for MQTT itself: its MQTT address is
	// Mosquitto's, which is where raw test clients connect too.
	return startServer(t, data, testenv.FreePort(t), m.addr,
		"--broker-url", "mqtts://"+m.addr, "--broker-auth-dir", m.authDir, "--broker-pid-file", m.pidFile)
}

// TestOnMosquitto runs the foundation's end-to-end tests with the console
// as an ordinary client of Mosquitto 2 instead of the embedded broker.
func TestOnMosquitto(t *testing.T) {
	t.Run("BackupEndToEnd", func(t *testing.T) { testBackupEndToEnd(t, mosquittoBroker) })
	t.Run("CommandWaitsForStoppedAgent", func(t *testing.T) { testCommandWaitsForStoppedAgent(t, mosquittoBroker) })
	t.Run("ServerRestartBetweenCommandAndResult", func(t *testing.T) { testServerRestartBetweenCommandAndResult(t, mosquittoBroker) })
	t.Run("AgentRestartMidRunReportsFailure", func(t *testing.T) { testAgentRestartMidRunReportsFailure(t, mosquittoBroker) })
	t.Run("ScheduledBackupsRunRealRestic", func(t *testing.T) { testScheduledBackupsRunRealRestic(t, mosquittoBroker) })
	t.Run("ACL", testMosquittoACL)
}

// testMosquittoACL checks the generated password and ACL files: an agent's
// credential reaches only its own subtree, a wrong password is refused, a
// revoked host is kept out.
func testMosquittoACL(t *testing.T) {
	srv := newMosquittoServer(t)
	credA, a := srv.credential("a")
	_, b := srv.credential("b")

	if _, _, err := dialMQTT(t, srv, credA.Username, credA.Username, "wrong-"+credA.Password, nil); err == nil {
		t.Fatal("Mosquitto accepted a wrong password")
	}
	mc, _, err := dialMQTT(t, srv, credA.Username, credA.Username, credA.Password, nil)
	if err != nil {
		t.Fatalf("agent a cannot log in to Mosquitto: %v", err)
	}
	// Mosquitto grants any subscription and filters each delivery by the
	// ACL: with desired schedules retained for both hosts, a's wildcard
	// subscriptions must bring a's and never b's.
	srv.putSchedules(a, []map[string]any{})
	srv.putSchedules(b, []map[string]any{})
	for _, filter := range []string{wire.Prefix + "/hosts/+/schedules/desired", "#", wire.SchedulesDesiredTopic(b)} {
		if code := mc.subscribe(t, filter); code >= 0x80 {
			t.Logf("subscribe %s refused (%#x)", filter, code)
		}
	}
	gotOwn := false
	for deadline := time.After(3 * time.Second); ; {
		var p *paho.Publish
		select {
		case p = <-mc.received:
		case <-deadline:
		}
		if p == nil {
			break
		}
		if !strings.HasPrefix(p.Topic, wire.HostPrefix(a)) {
			t.Fatalf("agent a received %s through Mosquitto", p.Topic)
		}
		gotOwn = gotOwn || p.Topic == wire.SchedulesDesiredTopic(a)
	}
	if !gotOwn {
		t.Fatal("agent a did not receive its own retained desired schedules")
	}
	// Publishing as b (a status saying b is online) must not reach the
	// console: Mosquitto 2.0 acknowledges a denied publish and drops it.
	st, err := json.Marshal(wire.Status{V: wire.Version, Online: true, AgentVersion: "x", OS: "linux", Arch: "amd64", Hostname: "evil", StartedAt: time.Now().UTC()})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, _ = mc.c.Publish(ctx, &paho.Publish{Topic: wire.StatusTopic(b), Payload: st, QoS: 1})
	time.Sleep(time.Second)
	if h := srv.host(b); h.Online {
		t.Fatal("a's credential made b online through Mosquitto")
	}
	// Garbage on its own topic is rejected and acknowledged (not redelivered
	// forever), and a good status after it still arrives.
	for _, bad := range [][]byte{[]byte("{not json"), []byte(`{"v":99}`), make([]byte, 10)} {
		_, _ = mc.c.Publish(ctx, &paho.Publish{Topic: wire.StatusTopic(a), Payload: bad, QoS: 1})
	}
	_, _ = mc.c.Publish(ctx, &paho.Publish{Topic: wire.StatusTopic(a), Payload: st, QoS: 1})
	srv.waitOnline(a, true)

	// Revocation regenerates the files: the next login fails.
	srv.do("POST", "/api/v1/hosts/"+a+"/revoke", nil, nil, 200)
	eventually(t, 20*time.Second, "revoked credential refused by Mosquitto", func() error {
		if _, _, err := dialMQTT(t, srv, credA.Username, credA.Username, credA.Password, nil); err == nil {
			return errorf("still accepted")
		}
		return nil
	})
	if pw, _ := os.ReadFile(filepath.Join(srv.extraValue("--broker-auth-dir"), "passwd")); strings.Contains(string(pw), credA.Password) || !strings.Contains(string(pw), b+":$7$") {
		t.Fatalf("password file: want b's $7$ hash and no plaintext, got:\n%s", pw)
	}
}

// extraValue returns the value of a flag the server was started with.
func (s *server) extraValue(flag string) string {
	for i := 0; i+1 < len(s.Args); i++ {
		if s.Args[i] == flag {
			return s.Args[i+1]
		}
	}
	return ""
}
