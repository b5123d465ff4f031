//go:build tools

// Package versitygw pins the S3-compatible server the backend tests run
// (e2e/backends_test.go). It is a module of its own: its dependencies
// (the AWS SDK, a newer golang.org/x/sys) would otherwise move restic's.
package versitygw

import (
	_ "github.com/versity/versitygw/cmd/versitygw"
)
