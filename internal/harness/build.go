package harness

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// ModuleRoot is the root directory of the module the working directory is
// in (where go.mod is).
func ModuleRoot(ctx context.Context) (string, error) {
	out, err := exec.CommandContext(ctx, "go", "env", "GOMOD").Output()
	if err != nil {
		return "", fmt.Errorf("go env GOMOD: %w", err)
	}
	gomod := strings.TrimSpace(string(out))
	if gomod == "" || gomod == os.DevNull {
		return "", errors.New("not inside the restic-manager module (go env GOMOD is empty)")
	}
	return filepath.Dir(gomod), nil
}

// Build compiles the command ./cmd/<name> of the module at root into out,
// with more go build flags (-race, -overlay ...).
func Build(ctx context.Context, root, name, out string, flags ...string) error {
	args := append(append([]string{"build"}, flags...), "-o", out, "./cmd/"+name)
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go build ./cmd/%s: %w\n%s", name, err, b)
	}
	return nil
}
