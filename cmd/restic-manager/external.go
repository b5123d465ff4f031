package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/broker"
	"github.com/restic-manager/restic-manager/storage"
)

// external is the server's external-broker mode: set when --broker-url is.
type external struct {
	url      *url.URL
	user     string
	password string
	caFile   string
	authDir  string
	pidFile  string
}

func externalSettings(f serverFlags, store *storage.Store) (*external, error) {
	if f.brokerURL == "" {
		for name, v := range map[string]string{"--broker-auth-dir": f.brokerAuthDir, "--broker-pid-file": f.brokerPIDFile, "--broker-password-file": f.brokerPasswordFile, "--broker-ca": f.brokerCA} {
			if v != "" {
				return nil, fmt.Errorf("%s needs --broker-url (an external broker)", name)
			}
		}
		return nil, nil
	}
	u, err := url.Parse(f.brokerURL)
	if err != nil {
		return nil, fmt.Errorf("--broker-url: %w", err)
	}
	switch u.Scheme {
	case "mqtt", "mqtts", "tcp", "ssl", "tls", "ws", "wss":
	default:
		return nil, fmt.Errorf("--broker-url: scheme %q: want mqtt, mqtts, ws or wss", u.Scheme)
	}
	if u.User != nil {
		return nil, errors.New("--broker-url must not hold credentials (they would show in the process list): use --broker-user and --broker-password-file")
	}
	if f.brokerPIDFile != "" && f.brokerAuthDir == "" {
		return nil, errors.New("--broker-pid-file needs --broker-auth-dir")
	}
	e := &external{url: u, user: f.brokerUser, caFile: f.brokerCA, authDir: f.brokerAuthDir, pidFile: f.brokerPIDFile}
	if f.brokerPasswordFile != "" {
		b, err := os.ReadFile(f.brokerPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--broker-password-file: %w", err)
		}
		e.password = strings.TrimSpace(string(b))
		if e.password == "" {
			return nil, fmt.Errorf("--broker-password-file %s is empty", f.brokerPasswordFile)
		}
	} else {
		// Recomputed from the master key at every start: nothing to store.
		e.password = store.DeriveSecret("external broker login " + e.user)
	}
	return e, nil
}

// accountsWriter returns the console's hook for credential changes: it
// writes Mosquitto's files (the console's own login included) and makes
// Mosquitto re-read them. Nil when there is nothing to write.
func (e *external) accountsWriter(log *slog.Logger) func([]broker.Account) error {
	if e == nil || e.authDir == "" {
		return nil
	}
	self, err := broker.MosquittoHash(e.password)
	if err != nil {
		return func([]broker.Account) error { return err }
	}
	return func(accounts []broker.Account) error {
		all := append([]broker.Account{{Username: e.user, Hash: self, Role: broker.AccountConsole}}, accounts...)
		if err := broker.WriteMosquittoAuth(e.authDir, all); err != nil {
			return err
		}
		if e.pidFile != "" {
			if err := broker.ReloadMosquitto(e.pidFile); err != nil {
				return err
			}
		}
		log.Info("external broker accounts written", "dir", e.authDir, "accounts", len(all), "reloaded", e.pidFile != "")
		return nil
	}
}

// client prepares the console's connection to the external broker.
func (e *external) client(consoleCA []byte, log *slog.Logger) (*broker.External, error) {
	var tlsCfg *tls.Config
	if s := e.url.Scheme; s == "mqtts" || s == "ssl" || s == "tls" || s == "wss" {
		tlsCfg = &tls.Config{MinVersion: tls.VersionTLS12, ServerName: e.url.Hostname()}
		if len(consoleCA) > 0 || e.caFile != "" {
			pool := x509.NewCertPool()
			pool.AppendCertsFromPEM(consoleCA)
			if e.caFile != "" {
				b, err := os.ReadFile(e.caFile)
				if err != nil {
					return nil, fmt.Errorf("--broker-ca: %w", err)
				}
				if !pool.AppendCertsFromPEM(b) {
					return nil, fmt.Errorf("--broker-ca %s: no PEM certificate", e.caFile)
				}
			}
			tlsCfg.RootCAs = pool
		}
	}
	return broker.NewExternal(broker.ExternalOptions{
		URL: e.url, TLS: tlsCfg, Username: e.user, Password: []byte(e.password), Logger: log,
	})
}

// start connects the console to the external broker and waits (bounded)
// for the first connection, so a wrong URL or login shows at start.
func (e *external) start(ctx context.Context, x *broker.External, ingest broker.Ingestor, log *slog.Logger) error {
	if err := x.Start(ctx, ingest); err != nil {
		return err
	}
	wctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if err := x.AwaitConnection(wctx); err != nil {
		log.Warn("not connected to the external broker yet; the console keeps trying", "url", e.url.Redacted(), "error", err)
	}
	return nil
}
