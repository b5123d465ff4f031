//go:build tools

// Package tools pins the external programs the tests and the demo need.
// It is its own module so that restic's and rest-server's dependencies never
// enter the main go.mod.
package tools

import (
	_ "github.com/restic/rest-server/cmd/rest-server"
	_ "github.com/restic/restic/cmd/restic"
)
