//go:build !windows

package agent

import (
	"fmt"
	"os"
)

// RestrictPath makes a file accessible to its owner only (mode 0600), or a
// directory (mode 0700). The agent already creates its files that way; this
// repairs a config or state directory that was copied or created by hand.
func RestrictPath(path string) error {
	st, err := os.Stat(path)
	if err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	mode := os.FileMode(0o600)
	if st.IsDir() {
		mode = 0o700
	}
	if err := os.Chmod(path, mode); err != nil {
		return fmt.Errorf("restrict %s: %w", path, err)
	}
	return nil
}
