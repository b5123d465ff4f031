// Package cli holds what both binaries' main packages share: logging setup
// and the version string.
package cli

import (
	"log/slog"
	"os"
	"strings"
)

// Version is set at build time with -ldflags "-X ...cli.Version=...".
var Version = "dev"

// Logger writes text logs to stderr at the level named by RM_LOG_LEVEL
// (debug, info, warn, error; default info).
func Logger() *slog.Logger {
	var lvl slog.Level
	switch strings.ToLower(os.Getenv("RM_LOG_LEVEL")) {
	case "debug":
		lvl = slog.LevelDebug
	case "warn":
		lvl = slog.LevelWarn
	case "error":
		lvl = slog.LevelError
	default:
		lvl = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: lvl}))
}
