package e2e

import (
	"fmt"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// An admin reads the audit log in the browser: newest first, fifty at a
// time with "Older entries" for the rest; filtered by actor (a click on
// one), by object (a click on one) and by time (the browser's time zone),
// the filters kept in the address; a range that ends before it starts is
// refused next to its field.
func TestBrowserAuditLog(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	const pw = "a long enough password"
	s.do("POST", "/api/v1/users", map[string]string{"name": "olga", "password": pw, "role": "operator"}, nil, 201)
	for i := range 55 {
		s.createHost(fmt.Sprintf("bulk-%02d", i))
	}
	// Olga's changes come a little later than the admin's.
	time.Sleep(1100 * time.Millisecond)
	olgaFrom := time.Now()
	b := newBrowser(t, s)
	b.login("olga", pw)
	hostID := eval[string](b, `fetch('/api/v1/hosts', {method: 'POST', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({name: 'from-olga'})}).then(r => r.json()).then(h => h.id)`, chromedp.EvalAwaitPromise)
	if code := eval[int](b, `fetch('/api/v1/hosts/`+hostID+`', {method: 'PATCH', headers: {'Content-Type': 'application/json'}, body: JSON.stringify({labels: {role: 'web'}})}).then(r => r.status)`, chromedp.EvalAwaitPromise); code != 200 {
		t.Fatalf("olga's label change: %d", code)
	}
	b.step("log out", chromedp.Click(chromedp.CSS(`header form button`)), chromedp.WaitVisible(chromedp.CSS(`#login-form`)))

	b.login("admin", adminPassword)
	// What the page must show, from the API: every entry (logins are
	// audited too), newest first.
	var all []struct {
		ID     string    `json:"id"`
		At     time.Time `json:"at"`
		Actor  string    `json:"actor"`
		Action string    `json:"action"`
		Target string    `json:"target"`
	}
	s.do("GET", "/api/v1/audit?limit=1000", nil, &all, 200)
	count := func(keep func(i int) bool) int {
		n := 0
		for i := range all {
			if keep(i) {
				n++
			}
		}
		return n
	}
	if len(all) < 58 {
		t.Fatalf("the API lists %d audit entries, want the user, 55 hosts, olga's 2 and the logins", len(all))
	}
	b.step("open the audit log from the nav",
		chromedp.Click(chromedp.CSS(`#nav-audit`)),
		chromedp.WaitVisible(chromedp.CSS(`#audit tbody tr[data-audit]`)),
	)
	if n := b.count(`#audit tbody tr`); n != 50 {
		t.Errorf("the first page has %d entries, want 50", n)
	}
	if got := eval[string](b, `document.querySelector('#audit tbody tr').dataset.audit`); got != all[0].ID {
		t.Errorf("the first row is %s, want the newest entry %s", got, all[0].ID)
	}
	b.step("older entries",
		chromedp.Click(chromedp.CSS(`#audit-older`)),
		chromedp.WaitNotVisible(chromedp.CSS(`#audit-older`)),
	)
	if n := b.count(`#audit tbody tr`); n != len(all) {
		t.Errorf("after 'older': %d entries, want %d", n, len(all))
	}
	if got := eval[string](b, `document.querySelector('#audit tbody tr:last-child').dataset.audit`); got != all[len(all)-1].ID {
		t.Errorf("the last row is %s, want the oldest entry %s", got, all[len(all)-1].ID)
	}
	if got, want := b.text(`#audit-status`), fmt.Sprintf("%d entries, the oldest reached.", len(all)); got != want {
		t.Errorf("status: %q, want %q", got, want)
	}
	b.shot("audit")

	// By actor: a click on olga in her label change's row.
	olgas := count(func(i int) bool { return all[i].Actor == "olga" })
	b.step("only olga's", chromedp.Evaluate[chromedp.Void](`Array.from(document.querySelectorAll('#audit tbody tr')).find(r => r.textContent.includes('PATCH /api/v1/hosts/{id}')).querySelector('.audit-actor').click()`))
	b.waitJS("olga's entries", fmt.Sprintf(`document.querySelectorAll('#audit tbody tr').length === %d && document.querySelector('#audit-status').textContent.startsWith('%d ')`, olgas, olgas), 20*time.Second)
	if got := eval[string](b, `location.search`); got != "?actor=olga" {
		t.Errorf("the address keeps %q", got)
	}
	if got := b.text(`#audit tbody`); strings.Contains(got, "admin") {
		t.Errorf("olga's entries include the admin's: %q", got)
	}
	// By object: a click on the host olga changed.
	hostPath := "/api/v1/hosts/" + hostID
	onHost := count(func(i int) bool { return all[i].Actor == "olga" && all[i].Target == hostPath })
	if onHost == 0 {
		t.Fatalf("the API has none of olga's entries on %s", hostPath)
	}
	b.step("only that host's", chromedp.Evaluate[chromedp.Void](`Array.from(document.querySelectorAll('#audit tbody tr .audit-target')).find(b => b.textContent === '`+hostPath+`').click()`))
	b.waitJS("the host's entries", fmt.Sprintf(`document.querySelector('#audit-filters input[name=target]').value !== '' && document.querySelector('#audit-status').textContent.startsWith('%d ')`, onHost), 20*time.Second)
	if q, _ := url.ParseQuery(strings.TrimPrefix(eval[string](b, `location.search`), "?")); q.Get("target") != hostPath || q.Get("actor") != "olga" {
		t.Errorf("the address keeps %v", q)
	}

	// By time: from just before olga's changes, for everyone.
	setTime := func(name string, at time.Time) chromedp.Action[chromedp.Void] {
		return chromedp.Evaluate[chromedp.Void](fmt.Sprintf(`(() => { const d = new Date(%q), p = n => String(n).padStart(2, '0');
			document.querySelector('#audit-filters input[name=%s]').value = d.getFullYear() + '-' + p(d.getMonth() + 1) + '-' + p(d.getDate()) + 'T' + p(d.getHours()) + ':' + p(d.getMinutes()) + ':' + p(d.getSeconds()); })()`,
			at.UTC().Format(time.RFC3339), name))
	}
	b.step("from olga's first change on, anyone's",
		chromedp.Click(chromedp.CSS(`#audit-clear`)),
		setTime("since", olgaFrom),
		chromedp.Click(chromedp.CSS(`#audit-apply`)),
	)
	from := olgaFrom.Truncate(time.Second) // the field has seconds
	since := count(func(i int) bool { return !all[i].At.Before(from) })
	b.waitJS("the entries since then", fmt.Sprintf(`document.querySelector('#audit-status').textContent.startsWith('%d ')`, since), 20*time.Second)
	if got := b.text(`#audit tbody`); strings.Contains(got, "POST /api/v1/users") || strings.Contains(got, "bulk") || !strings.Contains(got, "PATCH /api/v1/hosts/{id}") {
		t.Errorf("since olga's first change: %q", got)
	}
	b.step("until before since",
		setTime("until", olgaFrom.Add(-time.Hour)),
		chromedp.Click(chromedp.CSS(`#audit-apply`)),
		chromedp.WaitVisible(chromedp.CSS(`#audit-filters .field-error[data-for=until]`)),
	)
	if got := b.text(`#audit-filters .field-error[data-for=until]`); got != "until: must not be before since" {
		t.Errorf("the range's error: %q", got)
	}
	b.step("until before everything",
		chromedp.Evaluate[chromedp.Void](`document.querySelector('#audit-filters input[name=since]').value = ''`),
		setTime("until", olgaFrom.Add(-time.Hour)),
		chromedp.Click(chromedp.CSS(`#audit-apply`)),
	)
	b.waitJS("nothing", `document.querySelector('#audit-status').textContent === 'No entries match these filters.'`, 20*time.Second)
	if n := b.count(`#audit-filters .field-error`); n != 0 {
		t.Errorf("%d field errors left after a good query", n)
	}
}
