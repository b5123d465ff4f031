package runner

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"time"
)

// versionRE matches the first line of `restic version` from 0.14 on:
// "restic 0.18.1 compiled with go1.24.4 on linux/amd64", also
// "restic 0.16.0-dev (compiled manually) compiled with …".
var versionRE = regexp.MustCompile(`(?m)^restic v?(\d+\.\d+\.\d+[0-9A-Za-z.+~-]*)\s`)

// Version runs `restic version` and returns restic's version ("0.18.1").
func (r *Runner) Version(ctx context.Context) (string, error) {
	if r.Restic == "" {
		return "", fmt.Errorf("runner: no restic binary configured")
	}
	var out bytes.Buffer
	lw := newLineWriter(func(line []byte, _ bool) {
		if out.Len() < 64<<10 {
			out.Write(line)
			out.WriteByte('\n')
		}
	})
	cmd := exec.CommandContext(ctx, r.Restic, "version")
	cmd.Env = buildEnv("", nil)
	cmd.Stdin = nil
	cmd.Stdout = lw
	cmd.WaitDelay = 5 * time.Second
	setProcAttr(cmd)
	err := cmd.Run()
	lw.flush()
	if err != nil {
		return "", fmt.Errorf("restic version: %w", err)
	}
	return parseVersion(out.String())
}

func parseVersion(s string) (string, error) {
	m := versionRE.FindStringSubmatch(s + "\n")
	if m == nil {
		return "", fmt.Errorf("restic version: unexpected output %q", clip(s))
	}
	return m[1], nil
}
