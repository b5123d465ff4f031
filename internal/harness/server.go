package harness

import (
	"context"
	"crypto/tls"
	"encoding/pem"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"time"

	"github.com/restic-manager/restic-manager/internal/testenv"
	"github.com/restic-manager/restic-manager/internal/tlsutil"
)

// AdminUser is the account the server creates at its first start, with
// the password in RM_ADMIN_PASSWORD.
const AdminUser = "admin"

// ServerConfig is how to run `restic-manager server`.
type ServerConfig struct {
	Bin      string // the restic-manager binary
	Data     string // --data
	HTTPAddr string // --http ("": a free loopback port)
	MQTTAddr string // --mqtt ("": a free loopback port)
	Insecure bool   // --insecure: plain HTTP and MQTT; otherwise TLS from a generated CA the clients pin
	Args     []string
	Env      []string // KEY=VALUE added to the environment
	Log      string   // the output's file; "": kept in memory
	// AdminPassword is the first admin's password.
	AdminPassword string
	// ReadyTimeout bounds each wait of Ready (for the CA, for /healthz);
	// 0 is 30s.
	ReadyTimeout time.Duration
}

// Server is a running control plane.
type Server struct {
	ServerConfig
	Proc *Proc
	// CAFingerprint is the CA the clients pin ("" when insecure); set by
	// Ready.
	CAFingerprint string
	// HTTP has no session and trusts the server's CA; set by Ready.
	HTTP *http.Client
	// API is logged in as admin (a session cookie); set by Ready.
	API *Client
}

// StartServer starts the server process and returns at once; Ready waits
// for it. The caller owns the process (s.Proc) from here, also when
// Ready fails.
func StartServer(cfg ServerConfig) (*Server, error) {
	s := &Server{ServerConfig: cfg}
	for _, addr := range []*string{&s.HTTPAddr, &s.MQTTAddr} {
		if *addr == "" {
			var err error
			if *addr, err = testenv.FreeAddr(); err != nil {
				return nil, err
			}
		}
	}
	if s.ReadyTimeout == 0 {
		s.ReadyTimeout = 30 * time.Second
	}
	args := []string{"server", "--data", s.Data, "--http", s.HTTPAddr, "--mqtt", s.MQTTAddr}
	if s.Insecure {
		args = append(args, "--insecure")
	}
	args = append(args, s.Args...)
	env := append([]string{"RM_ADMIN_PASSWORD=" + s.AdminPassword}, s.Env...)
	var err error
	s.Proc, err = Start(Cmd{Name: "server", Bin: s.Bin, Args: args, Env: env, Log: s.Log})
	if err != nil {
		return nil, err
	}
	return s, nil
}

// Ready waits for the server's CA (with TLS) and /healthz, then logs in
// as admin. It gives up at once when the process exits.
func (s *Server) Ready(ctx context.Context) error {
	wait := func(what string, fn func() error) error {
		err := Poll(ctx, s.ReadyTimeout, func() error {
			if err := s.Proc.Exited(); err != nil {
				return Permanent(err)
			}
			return fn()
		})
		if err != nil {
			return fmt.Errorf("waiting for %s: %w", what, err)
		}
		return nil
	}
	s.HTTP = &http.Client{Timeout: 30 * time.Second}
	var transport http.RoundTripper
	if !s.Insecure {
		err := wait("the server's CA", func() error {
			b, err := os.ReadFile(filepath.Join(s.Data, "tls", "ca.pem"))
			if err != nil {
				return err
			}
			blk, _ := pem.Decode(b)
			if blk == nil {
				return errors.New("ca.pem not PEM yet")
			}
			s.CAFingerprint = tlsutil.Fingerprint(blk.Bytes)
			return nil
		})
		if err != nil {
			return err
		}
		transport = &http.Transport{TLSClientConfig: s.TLSConfig()}
		s.HTTP.Transport = transport
	}
	err := wait("server /healthz", func() error {
		req, err := http.NewRequestWithContext(ctx, "GET", s.URL("/healthz"), nil)
		if err != nil {
			return err
		}
		resp, err := s.HTTP.Do(req)
		if err != nil {
			return err
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		return nil
	})
	if err != nil {
		return err
	}
	s.API = NewSessionClient(s.URL(""), transport)
	return s.API.Login(ctx, AdminUser, s.AdminPassword)
}

// TLSConfig pins the server's CA (nil when insecure); valid after Ready.
func (s *Server) TLSConfig() *tls.Config {
	if s.Insecure {
		return nil
	}
	return tlsutil.ClientConfig(s.CAFingerprint, "127.0.0.1")
}

// URL is the address of path on the server's HTTP listener.
func (s *Server) URL(path string) string {
	if s.Insecure {
		return "http://" + s.HTTPAddr + path
	}
	return "https://" + s.HTTPAddr + path
}
