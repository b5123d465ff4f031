package e2e

import (
	"net"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
)

// An admin manages notification channels in the browser: a missing URL is
// refused next to the URL field; a webhook is added (its address and
// signing secret never shown again), sent a test that the receiver gets
// signed with that secret, and shows "delivered"; a channel whose address
// refuses shows the failure as its last delivery; an edit renames and
// re-routes without giving the settings again, and a bad new address is
// refused by its field; delete removes it.
func TestBrowserNotificationChannels(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	hook := &hookReceiver{}
	hs := httptest.NewServer(hook)
	defer hs.Close()
	hookURL := hs.URL + "/hook/token-in-the-path-42"
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	refusing := "http://" + ln.Addr().String() + "/down"
	ln.Close()

	b := newBrowser(t, s)
	b.login("admin", adminPassword)
	b.step("open the integrations from the nav",
		chromedp.Click(chromedp.CSS(`#nav-integrations`)),
		chromedp.WaitVisible(chromedp.CSS(`main[data-page=integrations] #channel-form`)),
	)
	// The form shows the chosen kind's settings only.
	if !eval[bool](b, `!document.querySelector('#channel-form input[name=url]').closest('label').hidden && document.querySelector('#channel-form input[name=smtp_host]').closest('label').hidden`) {
		t.Error("a webhook's form does not show its URL alone")
	}
	b.step("add a webhook without its URL",
		chromedp.SendKeys(chromedp.CSS(`#channel-form input[name=name]`), "ops hook"),
		chromedp.Click(chromedp.CSS(`#channel-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#channel-form .field-error[data-for=url]`)),
	)
	if got := b.text(`#channel-form .field-error[data-for=url]`); got != "url is required" {
		t.Errorf("the URL's error: %q", got)
	}
	b.step("add it with its URL and signing secret",
		chromedp.SendKeys(chromedp.CSS(`#channel-form input[name=url]`), hookURL),
		chromedp.SendKeys(chromedp.CSS(`#channel-form input[name=secret]`), "hook-secret"),
		chromedp.Click(chromedp.CSS(`#channel-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#channel-list tr[data-name="ops hook"]`)),
	)
	row := `#channel-list tr[data-name="ops hook"]`
	if got := b.text(row + ` .channel-delivery`); got != "nothing sent yet" {
		t.Errorf("a new channel's last delivery: %q", got)
	}
	b.step("send a test",
		chromedp.Click(chromedp.CSS(row+` .test-channel`)),
		chromedp.WaitVisible(chromedp.CSS(row+` .channel-delivery .st-succeeded`)),
	)
	if got := b.text(row + ` .test-result`); got != "✔ test sent" {
		t.Errorf("the test's answer: %q", got)
	}
	if n, bad := hook.count("test", "test"), hookBad(hook); n != 1 || bad != 0 {
		t.Errorf("the receiver got %d signed tests (%d badly signed)", n, bad)
	}

	// A channel that cannot deliver shows why.
	b.step("add a channel whose address refuses",
		chromedp.SendKeys(chromedp.CSS(`#channel-form input[name=name]`), "dead hook"),
		chromedp.SendKeys(chromedp.CSS(`#channel-form input[name=url]`), refusing),
		chromedp.Click(chromedp.CSS(`#channel-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#channel-list tr[data-name="dead hook"]`)),
		chromedp.Click(chromedp.CSS(`#channel-list tr[data-name="dead hook"] .test-channel`)),
		chromedp.WaitVisible(chromedp.CSS(`#channel-list tr[data-name="dead hook"] .channel-delivery .st-failed`)),
	)
	dead := `#channel-list tr[data-name="dead hook"]`
	if got := b.text(dead + ` .test-result`); !strings.HasPrefix(got, "✘ the test notification failed") {
		t.Errorf("the failed test's answer: %q", got)
	}
	if got := b.text(dead + ` .delivery-error`); got == "" || strings.Contains(got, "/down") {
		t.Errorf("the failed delivery's reason: %q (no path: it may carry a token)", got)
	}
	b.open("/integrations")
	if got := b.text(dead + ` .channel-delivery`); !strings.Contains(got, "failed") {
		t.Errorf("after a reload the failed delivery shows %q", got)
	}
	b.shot("integrations")
	if html := eval[string](b, `document.documentElement.outerHTML`); strings.Contains(html, "token-in-the-path-42") || strings.Contains(html, "hook-secret") {
		t.Error("the page shows a channel's address or secret")
	}

	// Edit: rename and re-route, the settings kept; then a bad address.
	b.step("edit the webhook",
		chromedp.Click(chromedp.CSS(row+` .edit-channel`)),
		chromedp.WaitVisible(chromedp.CSS(`#channel-edit-note`)),
		chromedp.SetValue(chromedp.CSS(`#channel-form input[name=name]`), "ops pager"),
		chromedp.SetValue(chromedp.CSS(`#channel-form select[name=min_severity]`), "critical"),
		chromedp.Click(chromedp.CSS(`#channel-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#channel-list tr[data-name="ops pager"]`)),
	)
	row = `#channel-list tr[data-name="ops pager"]`
	if got := b.text(row); !strings.Contains(got, "critical") || !strings.Contains(got, "delivered") {
		t.Errorf("the edited row: %q", got)
	}
	b.step("the settings were kept: a second test is signed and delivered",
		chromedp.Click(chromedp.CSS(row+` .test-channel`)),
		chromedp.WaitVisible(chromedp.CSS(row+` .test-result.result-ok`)),
	)
	if n, bad := hook.count("test", "test"), hookBad(hook); n != 2 || bad != 0 {
		t.Errorf("after the edit the receiver got %d signed tests (%d badly signed)", n, bad)
	}
	b.step("edit with an address that is not http",
		chromedp.Click(chromedp.CSS(row+` .edit-channel`)),
		chromedp.SendKeys(chromedp.CSS(`#channel-form input[name=url]`), "ftp://files.example.org/x"),
		chromedp.Click(chromedp.CSS(`#channel-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#channel-form .field-error[data-for=url]`)),
	)
	if got := b.text(`#channel-form .field-error[data-for=url]`); !strings.Contains(got, "scheme must be http or https") {
		t.Errorf("the bad address's error: %q", got)
	}
	b.step("cancel the edit and delete the dead channel",
		chromedp.Click(chromedp.CSS(`#channel-cancel`)),
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(dead+` .remove-channel`)),
		chromedp.WaitNotPresent(chromedp.CSS(dead)),
		chromedp.WaitVisible(chromedp.CSS(row)),
	)
	var chans []struct{ Name string }
	s.do("GET", "/api/v1/channels", nil, &chans, 200)
	if len(chans) != 1 || chans[0].Name != "ops pager" {
		t.Errorf("channels after the delete: %+v", chans)
	}
}

// An admin makes an MQTT account for an integration in the browser: a bad
// name is refused by the field; the password is shown once, logs into the
// broker, and is not in the page after a reload; deleted, the account no
// longer logs in. The Home Assistant discovery setting is saved and shown.
func TestBrowserIntegrationAccountsAndSettings(t *testing.T) {
	t.Parallel()
	s := newServer(t)
	b := newBrowser(t, s)
	b.login("admin", adminPassword)
	b.open("/integrations")
	b.step("a name with a space",
		chromedp.SendKeys(chromedp.CSS(`#mqtt-user-form input[name=name]`), "home assistant"),
		chromedp.Click(chromedp.CSS(`#mqtt-user-add`)),
		chromedp.WaitVisible(chromedp.CSS(`#mqtt-user-form .field-error[data-for=name]`)),
	)
	if got := b.text(`#mqtt-user-form .field-error[data-for=name]`); !strings.HasPrefix(got, "name: letters, digits") {
		t.Errorf("the name's error: %q", got)
	}
	b.step("make the account",
		chromedp.SetValue(chromedp.CSS(`#mqtt-user-form input[name=name]`), "homeassistant"),
		chromedp.Click(chromedp.CSS(`#mqtt-user-add`)),
		chromedp.WaitVisible(chromedp.CSS(`#mqtt-user-new`)),
	)
	password := b.text(`#mqtt-user-password`)
	if len(password) < 20 || b.text(`#mqtt-user-name`) != "homeassistant" || b.count(`#mqtt-user-list tr[data-mqtt-user=homeassistant]`) != 1 {
		t.Fatalf("the new account: %q %q", b.text(`#mqtt-user-name`), password)
	}
	if _, _, err := dialMQTT(t, s, "ha-browser", "homeassistant", password, nil); err != nil {
		t.Fatalf("the password shown does not log into the broker: %v", err)
	}
	b.open("/integrations")
	if strings.Contains(eval[string](b, `document.documentElement.outerHTML`), password) {
		t.Error("the password is in the page after a reload")
	}
	b.step("delete the account",
		chromedp.Evaluate[chromedp.Void](`window.confirm = () => true`),
		chromedp.Click(chromedp.CSS(`#mqtt-user-list tr[data-mqtt-user=homeassistant] .remove-mqtt-user`)),
		chromedp.WaitNotPresent(chromedp.CSS(`#mqtt-user-list tr[data-mqtt-user=homeassistant]`)),
	)
	if _, _, err := dialMQTT(t, s, "ha-browser-2", "homeassistant", password, nil); err == nil {
		t.Error("a deleted account still logs into the broker")
	}

	// Settings: loaded from the API, saved, shown after a reload.
	b.waitJS("the settings loaded", `document.querySelector('#console-settings').dataset.loaded === 'true'`, 20*time.Second)
	if eval[bool](b, `document.querySelector('#console-settings input[name=ha_discovery]').checked`) {
		t.Error("discovery shown on before it was set")
	}
	b.step("turn Home Assistant discovery on",
		chromedp.Click(chromedp.CSS(`#console-settings input[name=ha_discovery]`)),
		chromedp.Click(chromedp.CSS(`#settings-save`)),
		chromedp.WaitVisible(chromedp.CSS(`#settings-status.result-ok`)),
	)
	if got := b.text(`#settings-status`); got != "Saved: Home Assistant discovery on." {
		t.Errorf("after saving: %q", got)
	}
	var set struct {
		HADiscovery bool `json:"ha_discovery"`
	}
	s.do("GET", "/api/v1/settings", nil, &set, 200)
	if !set.HADiscovery {
		t.Error("the API says discovery is off")
	}
	b.open("/integrations")
	b.waitJS("the settings loaded", `document.querySelector('#console-settings').dataset.loaded === 'true'`, 20*time.Second)
	if !eval[bool](b, `document.querySelector('#console-settings input[name=ha_discovery]').checked`) {
		t.Error("discovery is not shown on after a reload")
	}
}

// hookBad is how many requests the receiver refused (a bad signature).
func hookBad(h *hookReceiver) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.bad
}
