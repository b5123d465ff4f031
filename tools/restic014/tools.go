//go:build tools

// Package restic014 pins restic 0.14.0 (Debian 12's version), the oldest
// restic the runner supports, for the runner's fixtures and tests. It is its
// own module, apart from tools/, because restic 0.14.0's dependencies are
// older than 0.18.1's and would otherwise be upgraded with them.
package restic014

import (
	_ "github.com/restic/restic/cmd/restic"
)
