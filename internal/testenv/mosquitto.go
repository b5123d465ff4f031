package testenv

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
)

// MosquittoBin finds Debian's mosquitto (in /usr/sbin, often not on PATH),
// installed by `make mosquitto`.
func MosquittoBin() (string, error) {
	if p, err := exec.LookPath("mosquitto"); err == nil {
		return p, nil
	}
	for _, p := range []string{"/usr/sbin/mosquitto", "/usr/local/sbin/mosquitto"} {
		if _, err := os.Stat(p); err == nil {
			return p, nil
		}
	}
	return "", errors.New("mosquitto not installed (run `make mosquitto` as root, or `apt-get install mosquitto`)")
}

// MosquittoConfig is what differs between the Mosquitto 2 configurations of
// the e2e tests and the fleet simulator; the rest is the console's contract
// with an external broker (docs/external-broker.md): the password and ACL
// files the console writes in AuthDir, client IDs from user names,
// persistence, and a queue deep enough for the console's own session.
type MosquittoConfig struct {
	AuthDir, PersistDir, Addr string
	// CertFile and KeyFile make the listener TLS (empty: plain TCP).
	CertFile, KeyFile string
	// Unlimited lifts the cap on connections (the simulator's 10,000).
	Unlimited bool
	// Notices logs a line per connect (off in the simulator: 10,000 of
	// them in a storm are the broker's work, not the fleet's).
	Notices bool
}

// MosquittoConf renders c as a mosquitto.conf.
func MosquittoConf(c MosquittoConfig) (string, error) {
	host, port, err := net.SplitHostPort(c.Addr)
	if err != nil {
		return "", fmt.Errorf("mosquitto listener %q: %w", c.Addr, err)
	}
	conf := fmt.Sprintf(`per_listener_settings false
allow_anonymous false
password_file %[1]s/passwd
acl_file %[1]s/acl
use_username_as_clientid true
persistence true
persistence_location %[2]s/
max_queued_messages 100000
log_dest stdout
log_type error
log_type warning
`, c.AuthDir, c.PersistDir)
	if c.Unlimited {
		conf += "max_connections -1\n"
	}
	if c.Notices {
		conf += "log_type notice\n"
	}
	conf += fmt.Sprintf("listener %s %s\n", port, host)
	if c.CertFile != "" {
		conf += fmt.Sprintf("certfile %s\nkeyfile %s\n", c.CertFile, c.KeyFile)
	}
	if os.Geteuid() == 0 {
		// Otherwise Mosquitto drops to user "mosquitto", who cannot read
		// the test's or simulator's private directories.
		conf += "user root\n"
	}
	return conf, nil
}
