package console

import (
	"net/http"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/storage"
)

// policyUIFixture is uiFixture with host-a labelled role=web and two
// policies made through the API: one on repo-1 for role=web (a name that
// needs escaping), one with a repository template and an environment for
// a label no host has.
func policyUIFixture(t *testing.T) (ids [2]string, get func(role, path string) (int, string)) {
	t.Helper()
	s, st := uiFixture(t)
	if _, err := st.UpdateHost("host-a", func(h *storage.Host) error { h.Labels = map[string]string{"role": "web", "env": "prod"}; return nil }); err != nil {
		t.Fatal(err)
	}
	var web, tpl struct {
		ID string `json:"id"`
	}
	if code := apiJSON(t, s, "rmt_ui_admin", "POST", "/api/v1/policies", `{"name":"web <nightly>","selector":{"role":"web"},"repo_id":"repo-1","rpo":"26h",
		"forget_guard":{"max_remove_percent":40},
		"schedules":[{"name":"files <1>","kind":"backup","cron":"0 2 * * *","enabled":true,"paths":["/srv/<x>"]},
		{"name":"thin","kind":"forget","cron":"0 4 * * 0","enabled":false,"retention":{"keep_daily":7}}]}`, &web); code != http.StatusCreated {
		t.Fatalf("create policy: %d", code)
	}
	if code := apiJSON(t, s, "rmt_ui_admin", "POST", "/api/v1/policies", `{"name":"per host","selector":{"role":"nobody"},
		"repo_template":{"url":"rest:https://x.example/{host}/<t>","init":true,"env":{"AWS_SECRET_ACCESS_KEY":"very-secret-value"}},
		"schedules":[{"name":"check","kind":"check","cron":"@weekly","enabled":true,"read_data_subset":"5%"}]}`, &tpl); code != http.StatusCreated {
		t.Fatalf("create template policy: %d", code)
	}
	return [2]string{web.ID, tpl.ID}, func(role, path string) (int, string) { return getPage(t, s, role, path) }
}

// The policy list and each policy's page render completely for every role
// (the nav links to them), escape what they show, never show a template's
// environment, and only admins get "New policy" and the editor.
func TestPolicyPagesRenderPerRole(t *testing.T) {
	ids, get := policyUIFixture(t)
	adminControls := []string{`id="new-policy"`, `id="policy-form"`, `id="policy-save"`, `id="policy-delete"`, `id="policy-schedule-editor"`, `id="policy-selector-text"`}
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		for _, p := range []string{"/policies", "/policies/" + ids[0], "/policies/" + ids[1]} {
			code, body := get(role, p)
			if code != 200 || !strings.Contains(body, "</html>") {
				t.Errorf("%s %s: %d, complete=%v", role, p, code, strings.Contains(body, "</html>"))
				continue
			}
			if !strings.Contains(body, `<a href="/policies" id="nav-policies">Policies</a>`) {
				t.Errorf("%s %s: no Policies link in the nav", role, p)
			}
			for _, raw := range []string{"web <nightly>", "files <1>", "/srv/<x>", "{host}/<t>"} {
				if strings.Contains(body, raw) {
					t.Errorf("%s %s: %q not escaped", role, p, raw)
				}
			}
			if strings.Contains(body, "very-secret-value") {
				t.Errorf("%s %s: the template's environment is shown", role, p)
			}
			for _, c := range adminControls {
				if c == `id="new-policy"` && p != "/policies" || c != `id="new-policy"` && p == "/policies" {
					continue
				}
				if strings.Contains(body, c) != (role == auth.RoleAdmin) {
					t.Errorf("%s on %s: %s shown %v", role, p, c, strings.Contains(body, c))
				}
			}
		}
	}

	// The list: name linked, selector badges, repository or template,
	// schedules with their kinds, RPO, matched hosts.
	_, body := get(auth.RoleViewer, "/policies")
	for _, want := range []string{
		`<a href="/policies/` + ids[0] + `" class="policy-link">web &lt;nightly&gt;</a>`,
		`data-label="role=web"`, `<a href="/repos/repo-1">main</a>`, `2 <span class="sub">(backup, forget)</span>`, `<td>26h</td>`,
		`one per host: <code>rest:https://x.example/{host}/&lt;t&gt;</code>`, `1 <span class="sub">(check)</span>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("policy list lacks %s", want)
		}
	}
	if !strings.Contains(body, `data-policy="`+ids[0]+`"`) || strings.Count(body, `<td class="policy-hosts">1</td>`) != 1 || strings.Count(body, `<td class="policy-hosts">0</td>`) != 1 {
		t.Error("policy list: matched host counts are not 1 (role=web) and 0 (role=nobody)")
	}

	// A policy's page, read-only: its facts and schedules in words.
	_, body = get(auth.RoleOperator, "/policies/"+ids[0])
	for _, want := range []string{`id="policy-hosts">1 host matched now`, `data-label="role=web"`, "a good backup at most 26h old", "more than 40%",
		"files &lt;1&gt;", "/srv/&lt;x&gt;", "every day at 02:00", "keep daily 7", ">disabled<"} {
		if !strings.Contains(body, want) {
			t.Errorf("operator's policy page lacks %s", want)
		}
	}
	// The admin's editor is filled in; the template's environment is only
	// said to be set.
	_, body = get(auth.RoleAdmin, "/policies/"+ids[0])
	for _, want := range []string{`value="web &lt;nightly&gt;"`, ">role=web\n</textarea>", `<option value="repo-1" selected>main</option>`, `name="rpo" placeholder="e.g. 26h" value="26h"`, `value="40"`, `data-schedules="[{`} {
		if !strings.Contains(body, want) {
			t.Errorf("admin's editor lacks %s", want)
		}
	}
	_, body = get(auth.RoleAdmin, "/policies/"+ids[1])
	for _, want := range []string{`id="template-env-set">Environment set; leave empty to keep it.`, `value="template" checked`, `name="template_init" checked`} {
		if !strings.Contains(body, want) {
			t.Errorf("admin's template policy editor lacks %s", want)
		}
	}

	// New policy: admins only.
	for _, role := range []string{auth.RoleViewer, auth.RoleOperator, auth.RoleAdmin} {
		code, body := get(role, "/policies/new")
		if role != auth.RoleAdmin {
			if code != http.StatusForbidden || !strings.Contains(body, "role") {
				t.Errorf("%s /policies/new: %d", role, code)
			}
			continue
		}
		if code != 200 || !strings.Contains(body, "</html>") || !strings.Contains(body, `id="policy-form"`) || strings.Contains(body, `id="policy-delete"`) || !strings.Contains(body, ">Create policy<") {
			t.Errorf("admin /policies/new: %d, the editor for a new policy is not complete", code)
		}
	}
	if code, body := get(auth.RoleAdmin, "/policies/pol-nope"); code != 404 || !strings.Contains(body, "does not exist") {
		t.Errorf("unknown policy: %d", code)
	}
	// After a save or a delete the script lands on the page with the count.
	if _, body := get(auth.RoleAdmin, "/policies/"+ids[0]+"?changed=2"); !strings.Contains(body, `id="policy-changed" role="status">Saved; the schedules of 2 hosts changed.`) {
		t.Error("the count of changed hosts is not shown after a save")
	}
	if _, body := get(auth.RoleAdmin, "/policies?deleted=1"); !strings.Contains(body, "Policy deleted; the schedules of 1 host changed.") {
		t.Error("the count of changed hosts is not shown after a delete")
	}
}
