package console

import (
	"go/ast"
	"go/parser"
	"go/token"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/storage"
)

// Commands that run on an endpoint are defined only in its agent's own
// configuration: a console that could send one would make a stolen admin
// session root on every endpoint. So no field of what the API takes, what
// the console stores or shows, or what travels to an agent may carry one.
// These tests walk every struct (named or anonymous, request and view) of
// those packages, and post such a field to the endpoints that take names.

// commandWord matches a field whose name or JSON key says it holds a
// command: command(s), cmd, argv, exec, script(s), shell.
var commandWord = regexp.MustCompile(`^(commands?|cmds?|argv|exec|execs|scripts?|shell|shells)$`)

// commandFieldsAllowed are shown to a person, never sent to an agent: the
// enrolment line an operator pastes on a new machine.
var commandFieldsAllowed = map[string]bool{
	"api/enrollkeys.go:enroll_command":   true,
	"api/enrollkeys.go:install_commands": true,
}

func TestNoFieldCarriesACommand(t *testing.T) {
	fields := 0
	for _, dir := range []string{"../wire", "../schedules", "../storage", "api", "view", "policy", "hooks"} {
		files, err := filepath.Glob(filepath.Join(dir, "*.go"))
		if err != nil || len(files) == 0 {
			t.Fatalf("%s: no Go files (%v)", dir, err)
		}
		for _, file := range files {
			if strings.HasSuffix(file, "_test.go") {
				continue
			}
			f, err := parser.ParseFile(token.NewFileSet(), file, nil, 0)
			if err != nil {
				t.Fatal(err)
			}
			rel := filepath.Base(dir) + "/" + filepath.Base(file)
			ast.Inspect(f, func(n ast.Node) bool {
				st, ok := n.(*ast.StructType)
				if !ok {
					return true
				}
				for _, fl := range st.Fields.List {
					key := ""
					if fl.Tag != nil {
						key, _, _ = strings.Cut(reflect.StructTag(strings.Trim(fl.Tag.Value, "`")).Get("json"), ",")
					}
					for _, name := range fl.Names {
						fields++
						words := append(strings.Split(key, "_"), camelWords(name.Name)...)
						for _, w := range words {
							if commandWord.MatchString(strings.ToLower(w)) && !commandFieldsAllowed[rel+":"+key] {
								t.Errorf("%s: field %s (json %q) looks like it carries a command: commands live only in the agent's configuration; name them", rel, name.Name, key)
							}
						}
					}
				}
				return true
			})
		}
	}
	if fields < 300 {
		t.Fatalf("walked %d fields: the walk missed the packages", fields)
	}
}

func camelWords(s string) []string {
	var out []string
	start := 0
	for i := 1; i < len(s); i++ {
		if s[i] >= 'A' && s[i] <= 'Z' && s[i-1] >= 'a' && s[i-1] <= 'z' {
			out = append(out, s[start:i])
			start = i
		}
	}
	return append(out, s[start:])
}

func TestCamelWords(t *testing.T) {
	if got := strings.Join(camelWords("LimitUploadKiB"), " "); got != "Limit Upload Ki B" && got != "Limit Upload KiB" {
		t.Errorf("camelWords = %q", got)
	}
	if got := strings.Join(camelWords("PreCommand"), " "); got != "Pre Command" {
		t.Errorf("camelWords = %q", got)
	}
}

// The decoders of the three endpoints that take hook and source names
// refuse a field they do not know, so a command slipped into a request is
// refused, not silently dropped (or, worse, stored for a later version to
// read).
func TestEndpointsRefuseACommandField(t *testing.T) {
	c, st, _ := newTestConsole(t)
	withRoles(t, st)
	enrolledHost(t, st, "host-a")
	if _, err := st.CreateRepo(storage.Repo{ID: "repo-1", Name: "r", Hosts: []string{"host-a"}, HostsListed: true}, storage.RepoSecrets{URL: "/srv/r", Password: "pw"}); err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(c.Handler(nil))
	defer srv.Close()
	api := caller{t, srv}
	admin := "rmt_trust_admin"
	sched := `{"name":"n","kind":"backup","cron":"0 2 * * *","enabled":true,"repo_id":"repo-1","paths":["/srv"]`
	for _, tc := range []struct{ method, path, body string }{
		{"POST", "/api/v1/hosts/host-a/jobs", `{"kind":"backup","repo_id":"repo-1","args":{"paths":["/srv"]},"command":["sh","-c","id"]}`},
		{"POST", "/api/v1/hosts/host-a/jobs", `{"kind":"backup","repo_id":"repo-1","args":{"paths":["/srv"],"pre_command":"id"}}`},
		{"POST", "/api/v1/hosts/host-a/jobs", `{"kind":"backup","repo_id":"repo-1","args":{"paths":["/srv"],"hooks":["x"],"script":"id"}}`},
		{"POST", "/api/v1/jobs/bulk", `{"host_ids":["host-a"],"kind":"backup","repo_id":"repo-1","args":{"sources":["pg"],"shell":"id"}}`},
		{"PUT", "/api/v1/hosts/host-a/schedules", `[` + sched + `,"command":["sh","-c","id"]}]`},
		{"POST", "/api/v1/policies", `{"name":"p","selector":{"role":"web"},"repo_id":"repo-1","schedules":[` + sched + `,"hooks":["x"],"cmd":"id"}]}`},
		{"POST", "/api/v1/policies", `{"name":"p","selector":{"role":"web"},"repo_id":"repo-1","schedules":[],"script":"id"}`},
		{"PATCH", "/api/v1/hosts/host-a", `{"hooks":["freeze"]}`},
		{"POST", "/api/v1/restores", `{"repo_id":"repo-1","snapshot_id":"latest","target_host_id":"host-a","to_source":"pg","exec":"psql"}`},
	} {
		code, out := api.do(admin, tc.method, tc.path, tc.body)
		msg, _ := out["error"].(string)
		if code != http.StatusBadRequest || !strings.Contains(msg, "unknown field") {
			t.Errorf("%s %s %s: %d %v, want 400 unknown field", tc.method, tc.path, tc.body, code, out)
		}
	}
	jobs, _, _ := st.ListJobs(storage.JobQuery{HostID: "host-a"})
	if len(jobs) != 0 {
		t.Errorf("%d jobs made", len(jobs))
	}
}
