package agent

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"gopkg.in/yaml.v3"

	"github.com/restic-manager/restic-manager/agentcmd"
	"github.com/restic-manager/restic-manager/wire"
)

// Config is the agent's YAML configuration, written by enroll (mode 0600).
type Config struct {
	HostID    string `yaml:"host_id"`
	ServerURL string `yaml:"server_url,omitempty"`
	BrokerURL string `yaml:"broker_url"`
	Username  string `yaml:"username"`
	Password  string `yaml:"password"`
	// CAFingerprint pins the broker's CA (SHA-256, hex) when it uses TLS.
	CAFingerprint string `yaml:"ca_fingerprint,omitempty"`
	// StateDir holds the job journal, the outbox and the agent's key.
	// Default: a "state" directory beside the config file.
	StateDir string `yaml:"state_dir,omitempty"`
	// Restic is the restic binary; default RM_RESTIC, else "restic" on PATH.
	Restic string `yaml:"restic,omitempty"`
	// Hooks and Sources are the commands this endpoint lets the console
	// name (agentcmd): defined here, by whoever administers the machine,
	// and nowhere else. SIGHUP reloads them.
	Hooks   map[string]agentcmd.Hook   `yaml:"hooks,omitempty"`
	Sources map[string]agentcmd.Source `yaml:"sources,omitempty"`
}

// LoadConfig reads and checks a config file.
func LoadConfig(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, fmt.Errorf("agent config: %w", err)
	}
	if err := yaml.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("agent config %s: %w", path, err)
	}
	if !wire.ValidID(c.HostID) || c.Username == "" || c.Password == "" || c.BrokerURL == "" {
		return c, fmt.Errorf("agent config %s: host_id, broker_url, username and password are required (run enroll)", path)
	}
	if c.StateDir == "" {
		c.StateDir = filepath.Join(filepath.Dir(path), "state")
	}
	if _, err := agentcmd.NewSet(c.Hooks, c.Sources); err != nil {
		return c, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// readConfigFile parses a config file without checking it.
func readConfigFile(path string) (Config, error) {
	var c Config
	b, err := os.ReadFile(path)
	if err != nil {
		return c, err
	}
	return c, yaml.Unmarshal(b, &c)
}

// Save writes the config with mode 0600, replacing any earlier file
// atomically so that a crash never leaves half a credential behind.
func (c Config) Save(path string) error {
	if c.HostID == "" {
		return errors.New("agent config: empty host_id")
	}
	b, err := yaml.Marshal(c)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("agent config: %w", err)
	}
	return writeFileAtomic(path, b, 0o600)
}

// writeFileAtomic writes to a temporary file in the same directory, syncs it
// and renames it over path.
func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), ".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if err := f.Chmod(perm); err != nil {
		f.Close()
		return err
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		return err
	}
	return syncDir(filepath.Dir(path))
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	defer d.Close()
	// Directory fsync is unsupported on some platforms (Windows); the rename
	// is still atomic there.
	_ = d.Sync()
	return nil
}
