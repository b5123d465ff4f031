package runner

import (
	"bytes"
	"context"
	"fmt"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
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

// resticVersion is a parsed restic version (major.minor.patch); a suffix
// ("-dev") is ignored: restic names its development builds after the last
// release, so "0.16.0-dev" has 0.16.0's features. The zero value (known
// false) stands for "not known": it is taken as the newest version.
type resticVersion struct {
	known               bool
	major, minor, patch int
}

var versionNumRE = regexp.MustCompile(`^v?(\d+)\.(\d+)\.(\d+)(?:[-+~.][0-9A-Za-z.+~-]*)?$`)

// parseResticVersion parses "0.18.1", "v0.16.0-dev"; "" gives the unknown
// (newest) version.
func parseResticVersion(s string) (resticVersion, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return resticVersion{}, nil
	}
	m := versionNumRE.FindStringSubmatch(s)
	if m == nil {
		return resticVersion{}, fmt.Errorf("invalid restic version %q", s)
	}
	v := resticVersion{known: true}
	for i, p := range []*int{&v.major, &v.minor, &v.patch} {
		n, err := strconv.Atoi(m[i+1])
		if err != nil || n > 1<<20 {
			return resticVersion{}, fmt.Errorf("invalid restic version %q", s)
		}
		*p = n
	}
	return v, nil
}

// atLeast reports whether v is major.minor.patch or newer; an unknown
// version is.
func (v resticVersion) atLeast(major, minor, patch int) bool {
	if !v.known {
		return true
	}
	if v.major != major {
		return v.major > major
	}
	if v.minor != minor {
		return v.minor > minor
	}
	return v.patch >= patch
}

func (v resticVersion) String() string {
	if !v.known {
		return "latest"
	}
	return fmt.Sprintf("%d.%d.%d", v.major, v.minor, v.patch)
}

// VersionAtLeast reports whether restic version v (as Version returns it,
// "0.18.1") is min or newer. An empty v means "the newest" and is; so is a
// v that cannot be parsed (Run refuses such a Runner.ResticVersion). min
// must be a valid version.
func VersionAtLeast(v, min string) bool {
	pv, err := parseResticVersion(v)
	if err != nil || !pv.known {
		return true
	}
	pm, err := parseResticVersion(min)
	if err != nil || !pm.known {
		return false
	}
	return pv.atLeast(pm.major, pm.minor, pm.patch)
}
