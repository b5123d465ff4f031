package main

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/internal/harness"
	"github.com/restic-manager/restic-manager/internal/testenv"
)

// Broker modes (-broker).
const (
	brokerEmbedded  = "embedded"
	brokerMosquitto = "mosquitto"
)

// mosquittoProc is a Mosquitto 2 (Debian's package, `make mosquitto`) the
// simulator runs as the console's external broker, with the password and
// ACL files the console writes (--broker-auth-dir) and reloads (SIGHUP
// through --broker-pid-file), as e2e/mosquitto_test.go does.
type mosquittoProc struct {
	addr    string
	authDir string
	pidFile string
	conf    string
	proc    *harness.Proc
}

// startMosquitto writes an empty password and ACL file (the console fills
// them at its start), starts Mosquitto on a free loopback port and waits
// until it listens. A returned process must be stopped, also with an error.
func startMosquitto(ctx context.Context, work string) (*mosquittoProc, error) {
	bin, err := testenv.MosquittoBin()
	if err != nil {
		return nil, err
	}
	dir := filepath.Join(work, "mosquitto")
	m := &mosquittoProc{authDir: filepath.Join(dir, "auth"), pidFile: filepath.Join(dir, "mosquitto.pid"), conf: filepath.Join(dir, "mosquitto.conf")}
	if err := os.MkdirAll(m.authDir, 0o700); err != nil {
		return nil, fmt.Errorf("mosquitto: %w", err)
	}
	for _, f := range []string{"passwd", "acl"} {
		if err := os.WriteFile(filepath.Join(m.authDir, f), nil, 0o600); err != nil {
			return nil, fmt.Errorf("mosquitto: %w", err)
		}
	}
	// The free port is released before Mosquitto binds it; another
	// process may take it in between: try again on a new port then.
	for attempt := 1; ; attempt++ {
		if m.addr, err = testenv.FreeAddr(); err != nil {
			return nil, err
		}
		err = m.start(ctx, bin, dir)
		if err == nil || attempt == 5 || !strings.Contains(err.Error(), "Address already in use") {
			return m, err
		}
		m.stop()
	}
}

func (m *mosquittoProc) start(ctx context.Context, bin, dir string) error {
	// The e2e tests' configuration but a plain-TCP listener (the simulator
	// runs the console with --insecure and its agents speak plain MQTT to
	// the embedded broker too: the two modes differ by the broker only) and
	// no cap on connections.
	conf, err := testenv.MosquittoConf(testenv.MosquittoConfig{AuthDir: m.authDir, PersistDir: dir, Addr: m.addr, Unlimited: true})
	if err != nil {
		return err
	}
	if err := os.WriteFile(m.conf, []byte(conf), 0o600); err != nil {
		return fmt.Errorf("mosquitto: %w", err)
	}
	log := filepath.Join(dir, "mosquitto.log")
	if m.proc, err = harness.Start(harness.Cmd{Name: "mosquitto", Bin: bin, Args: []string{"-c", m.conf}, Log: log}); err != nil {
		return err
	}
	if err := os.WriteFile(m.pidFile, []byte(fmt.Sprint(m.proc.Pid())), 0o600); err != nil {
		return fmt.Errorf("mosquitto: %w", err)
	}
	// Mosquitto must have its SIGHUP handler before the console reloads it.
	err = harness.WaitListening(ctx, 20*time.Second, m.proc, m.addr, log)
	if err != nil {
		return fmt.Errorf("mosquitto on %s: %w", m.addr, err)
	}
	return nil
}

// serverArgs point the console at this Mosquitto.
func (m *mosquittoProc) serverArgs() []string {
	return []string{"--broker-url", "mqtt://" + m.addr, "--broker-auth-dir", m.authDir, "--broker-pid-file", m.pidFile}
}

func (m *mosquittoProc) stop() {
	if m == nil || m.proc == nil {
		return
	}
	_ = m.proc.Stop(30 * time.Second)
}
