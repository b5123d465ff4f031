// Package install holds the agent install scripts that the console serves
// at /install.sh (Linux, POSIX sh) and /install.ps1 (Windows PowerShell).
// Both download the agent from the console's /downloads/ route
// (restic-manager-agent-OS-ARCH), enrol it with a one-time token and
// install its service; see the comments at the top of each script.
package install

import "embed"

// Scripts holds install.sh and install.ps1.
//
//go:embed install.sh install.ps1
var Scripts embed.FS
