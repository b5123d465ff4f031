package policy

import (
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/storage"
)

// A policy's audit entries name its template URL without the password a
// rest-server URL may carry.
func TestHistoryLeavesOutTheTemplatePassword(t *testing.T) {
	old := storage.Policy{Name: "p", RepoTemplate: &storage.RepoTemplate{URL: "rest:https://backup:s3cret-pw@rs.example/{host}/"}}
	pol := old
	pol.RepoTemplate = &storage.RepoTemplate{URL: "rest:https://backup:n3w-pw@rs2.example/{host}/", Init: true}
	for _, d := range []string{Describe(old, 3), Diff(old, pol, 3)} {
		if strings.Contains(d, "s3cret-pw") || strings.Contains(d, "n3w-pw") || !strings.Contains(d, "rs.example/{host}/") {
			t.Errorf("audit detail %q", d)
		}
	}
}
