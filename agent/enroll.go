package agent

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/internal/seal"
	"github.com/restic-manager/restic-manager/internal/tlsutil"
	"github.com/restic-manager/restic-manager/wire"
)

// EnrollOptions configure Enroll.
type EnrollOptions struct {
	ServerURL string
	// Token is a one-time token for a host made in the console; Key is a
	// reusable enrolment key with which the console makes the host, named
	// Name (default: this machine's hostname) and labelled with the key's
	// labels and, if the key allows, Labels. Exactly one of Token and Key.
	Token      string
	Key        string
	Name       string
	Labels     map[string]string
	ConfigPath string
	StateDir   string // default: "state" beside the config
	Restic     string
	// CAFingerprint pins the console's CA (from the enrolment command); with
	// an https server URL and no fingerprint, the system roots apply.
	CAFingerprint string
	HTTPClient    *http.Client
}

// Enroll exchanges a one-time token or an enrolment key for this host's
// credential, makes the agent's key pair and writes the config (0600), the
// same either way. The private key never leaves the machine; the console
// gets the public half.
func Enroll(ctx context.Context, o EnrollOptions) (Config, error) {
	if o.ServerURL == "" || o.ConfigPath == "" {
		return Config{}, fmt.Errorf("enroll: server URL and config path are required")
	}
	if (o.Token == "") == (o.Key == "") {
		return Config{}, fmt.Errorf("enroll: give a one-time token or an enrolment key (exactly one)")
	}
	if o.Key == "" && (o.Name != "" || len(o.Labels) > 0) {
		return Config{}, fmt.Errorf("enroll: a name and labels go with an enrolment key (a token's host is named and labelled in the console)")
	}
	if err := wire.ValidateLabels(o.Labels); err != nil {
		return Config{}, fmt.Errorf("enroll: %s", strings.TrimPrefix(err.Error(), wire.ErrInvalid.Error()+": "))
	}
	stateDir := o.StateDir
	if stateDir == "" {
		stateDir = filepath.Join(filepath.Dir(o.ConfigPath), "state")
	}
	if err := os.MkdirAll(stateDir, 0o700); err != nil {
		return Config{}, fmt.Errorf("enroll: state dir: %w", err)
	}
	identity, recipient, err := seal.NewIdentity()
	if err != nil {
		return Config{}, err
	}
	hostname, _ := os.Hostname()
	body, _ := json.Marshal(wire.EnrollRequest{Token: o.Token, Key: o.Key, Name: o.Name, Labels: o.Labels,
		PublicKey: recipient, Hostname: hostname, OS: runtime.GOOS, Arch: runtime.GOARCH})
	server := strings.TrimRight(o.ServerURL, "/")
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, server+"/api/v1/enroll", bytes.NewReader(body))
	if err != nil {
		return Config{}, fmt.Errorf("enroll: %w", err)
	}
	req.Header.Set("Content-Type", "application/json")
	hc := o.HTTPClient
	if hc == nil {
		u, err := url.Parse(server)
		if err != nil {
			return Config{}, fmt.Errorf("enroll: server URL: %w", err)
		}
		hc = &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tlsutil.ClientConfig(o.CAFingerprint, u.Hostname()),
		}}
	}
	resp, err := hc.Do(req)
	if err != nil {
		return Config{}, fmt.Errorf("enroll: %w", err)
	}
	defer resp.Body.Close()
	rb, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		_ = json.Unmarshal(rb, &e)
		if e.Error == "" {
			e.Error = resp.Status
		}
		return Config{}, fmt.Errorf("enroll refused by %s: %s", server, e.Error)
	}
	var er wire.EnrollResponse
	if err := json.Unmarshal(rb, &er); err != nil {
		return Config{}, fmt.Errorf("enroll: response: %w", err)
	}
	if !wire.ValidID(er.HostID) || er.Password == "" || er.BrokerURL == "" {
		return Config{}, fmt.Errorf("enroll: incomplete response from %s", server)
	}
	fp := tlsutil.NormalizeFingerprint(o.CAFingerprint)
	if fp == "" {
		// Plain HTTP enrolment (development) takes the console's word.
		fp = tlsutil.NormalizeFingerprint(er.CAFingerprint)
	} else if got := tlsutil.NormalizeFingerprint(er.CAFingerprint); got != "" && got != fp {
		return Config{}, fmt.Errorf("enroll: the console names CA %s but the command pinned %s", got, fp)
	}
	if err := writeFileAtomic(filepath.Join(stateDir, identityFile), []byte(identity+"\n"), 0o600); err != nil {
		return Config{}, fmt.Errorf("enroll: key: %w", err)
	}
	cfg := Config{
		HostID: er.HostID, ServerURL: server, BrokerURL: er.BrokerURL, Username: er.Username, Password: er.Password,
		CAFingerprint: fp, StateDir: stateDir, Restic: o.Restic,
	}
	// A re-enrolment keeps the machine's own hooks and sources: they are
	// its administrator's, not the console's.
	if old, err := readConfigFile(o.ConfigPath); err == nil {
		cfg.Hooks, cfg.Sources = old.Hooks, old.Sources
	}
	if err := cfg.Save(o.ConfigPath); err != nil {
		return Config{}, err
	}
	return cfg, nil
}
