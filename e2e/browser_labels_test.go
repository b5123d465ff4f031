package e2e

import (
	"strings"
	"testing"

	"github.com/chromedp/chromedp"
)

// An operator labels a host on its page (a bad label is refused in words,
// nothing saved); the label's badge leads to the dashboard filtered by it,
// which shows that host and not the others.
func TestBrowserOperatorLabelsAHost(t *testing.T) {
	s := newServer(t)
	web := s.createHost("web-1")
	db := s.createHost("db-1")
	s.do("PATCH", "/api/v1/hosts/"+db.ID, map[string]any{"labels": map[string]string{"role": "db", "env": "prod"}}, nil, 200)
	const operatorPW = "operator-password-long"
	s.do("POST", "/api/v1/users", map[string]string{"name": "olga", "password": operatorPW, "role": "operator"}, nil, 201)

	b := newBrowser(t, s)
	b.login("olga", operatorPW)
	b.open("/hosts/" + web.ID)
	if got := b.text("#labels"); got != "none" {
		t.Errorf("labels of a new host: %q, want none", got)
	}

	b.step("save a bad label",
		chromedp.Click(chromedp.CSS(`#labels-editor-box summary`)),
		chromedp.SetValue(chromedp.CSS(`#labels-text`), "Role=web"),
		chromedp.Click(chromedp.CSS(`#labels-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#labels-error`)),
	)
	if msg := b.text("#labels-error"); !strings.HasPrefix(msg, `label key "Role": use 1-63 lower-case letters`) {
		t.Errorf("bad label error %q", msg)
	}
	var h struct {
		Labels map[string]string `json:"labels"`
	}
	s.do("GET", "/api/v1/hosts/"+web.ID, nil, &h, 200)
	if len(h.Labels) != 0 {
		t.Errorf("a refused label was stored: %v", h.Labels)
	}

	b.step("save the labels",
		chromedp.SetValue(chromedp.CSS(`#labels-text`), "role=web\nenv=prod"),
		chromedp.Click(chromedp.CSS(`#labels-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#labels a[data-label="role=web"]`)),
	)
	if got := b.text("#labels"); got != "env=prod role=web" {
		t.Errorf("labels shown after saving: %q", got)
	}
	h.Labels = nil
	s.do("GET", "/api/v1/hosts/"+web.ID, nil, &h, 200)
	if h.Labels["role"] != "web" || h.Labels["env"] != "prod" || len(h.Labels) != 2 {
		t.Errorf("API: labels %v, want role=web env=prod", h.Labels)
	}
	b.shot("host-labels")

	// The badge opens the dashboard filtered by role=web: this host only
	// (db-1 is env=prod too, but not role=web), while the counts still
	// cover both.
	b.step("open the dashboard by the badge",
		chromedp.Click(chromedp.CSS(`#labels a[data-label="role=web"]`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=dashboard] #label-filter`)),
	)
	if n := b.count(`#hosts tr[data-host="` + web.ID + `"]`); n != 1 {
		t.Errorf("dashboard filtered by role=web does not show %s", web.ID)
	}
	if n := b.count(`#hosts tr[data-host]`); n != 1 {
		t.Errorf("dashboard filtered by role=web shows %d hosts, want 1", n)
	}
	if got := b.text("#count-hosts"); got != "2" {
		t.Errorf("host count %q under a filter, want the whole fleet (2)", got)
	}
	if got := eval[string](b, `location.search`); got != "?label=role%3Dweb" {
		t.Errorf("dashboard address %q", got)
	}
	b.shot("dashboard-labels")

	// env=prod from the row's badge adds to the filter; then dropping
	// role=web from it shows both production hosts.
	row := `#hosts tr[data-host="` + web.ID + `"]`
	b.step("add env=prod from the row's badge",
		chromedp.Click(chromedp.CSS(row+` a.label[data-label="env=prod"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#label-filter a[data-label="env=prod"]`)),
	)
	if n := b.count(`#hosts tr[data-host]`); n != 1 {
		t.Errorf("role=web and env=prod: %d hosts, want 1", n)
	}
	b.step("drop role=web from the filter",
		chromedp.Click(chromedp.CSS(`#label-filter a[data-label="role=web"]`)),
		chromedp.WaitVisible(chromedp.CSS(`#hosts tr[data-host="`+db.ID+`"]`)),
	)
	if n := b.count(`#hosts tr[data-host]`); n != 2 {
		t.Errorf("env=prod: %d hosts, want 2", n)
	}
}
