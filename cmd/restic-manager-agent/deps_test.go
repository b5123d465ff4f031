package main

import (
	"os/exec"
	"strings"
	"testing"
)

// The agent runs on every endpoint: it must not link the broker, the
// console, the store or Badger.
func TestAgentDependencies(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", ".").CombinedOutput()
	if err != nil {
		t.Fatalf("go list: %v\n%s", err, out)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 20 {
		t.Fatalf("suspiciously few dependencies: %v", deps)
	}
	for _, d := range deps {
		for _, bad := range []string{
			"github.com/restic-manager/restic-manager/broker",
			"github.com/restic-manager/restic-manager/console",
			"github.com/restic-manager/restic-manager/storage",
			"github.com/dgraph-io/badger",
			"github.com/mochi-mqtt/server",
			"github.com/go-chi/chi",
		} {
			if d == bad || strings.HasPrefix(d, bad+"/") {
				t.Errorf("the agent links %s", d)
			}
		}
	}
}
