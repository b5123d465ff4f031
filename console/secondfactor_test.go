package console

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/pquerna/otp/totp"

	"github.com/restic-manager/restic-manager/console/auth"
	"github.com/restic-manager/restic-manager/storage"
)

// Through the API: a user sets up TOTP from a session (never with a
// token), confirms it with a code, and from then on POST /login needs
// totp_code; an admin resets it (audited) and the password alone works
// again. With the setting on, an operator without one can only enrol.
func TestSecondFactorThroughAPI(t *testing.T) {
	a := newAccounts(t, map[string]string{"root": auth.RoleAdmin, "ops": auth.RoleOperator})
	ops := a.mustLogin("ops", password("ops"))
	a.want(a.as(bearer("ops"), "POST", "/api/v1/me/totp", ""), http.StatusForbidden, "enrolling with a token")
	var e struct {
		Secret        string   `json:"secret"`
		URL           string   `json:"otpauth_url"`
		RecoveryCodes []string `json:"recovery_codes"`
	}
	r := a.as(ops, "POST", "/api/v1/me/totp", "")
	a.want(r, http.StatusCreated, "POST /me/totp")
	r.decode(t, &e)
	if e.Secret == "" || len(e.RecoveryCodes) != 10 || !strings.Contains(e.URL, "secret="+e.Secret) {
		t.Fatalf("enrolment %+v", e)
	}
	a.want(a.as(ops, "POST", "/api/v1/me/totp/confirm", `{"code":"12"}`), http.StatusBadRequest, "confirming with a bad code")
	code, _ := totp.GenerateCode(e.Secret, time.Now())
	a.want(a.as(ops, "POST", "/api/v1/me/totp/confirm", `{"code":"`+code+`"}`), http.StatusOK, "confirming")
	a.want(a.as(ops, "POST", "/api/v1/me/totp", ""), http.StatusConflict, "enrolling twice")

	// Password alone: 401 naming the second factor.
	r, c := a.login("ops", password("ops"), "192.0.2.9:1")
	var ans map[string]any
	r.decode(t, &ans)
	if r.code != http.StatusUnauthorized || ans["second_factor"] != "totp" || c.cookie != nil {
		t.Fatalf("password alone: %d %s", r.code, r.body)
	}
	loginWith := func(code string) answer {
		b, _ := json.Marshal(map[string]string{"username": "ops", "password": password("ops"), "totp_code": code})
		return a.do("POST", "/api/v1/login", string(b), cred{}, "192.0.2.9:1")
	}
	a.want(loginWith(e.RecoveryCodes[0]), http.StatusOK, "login with a recovery code")
	a.want(loginWith(e.RecoveryCodes[0]), http.StatusUnauthorized, "the same recovery code again")

	// The admin resets it: audited, and the password alone logs in.
	a.want(a.as(bearer("root"), "DELETE", "/api/v1/users/ops/totp", ""), http.StatusNoContent, "reset")
	a.want(a.as(bearer("root"), "DELETE", "/api/v1/users/ops/totp", ""), http.StatusNotFound, "reset twice")
	entries, _, _ := a.st.ListAudit(storage.AuditQuery{Actor: "root"})
	found := false
	for _, en := range entries {
		found = found || en.Action == "DELETE /api/v1/users/{name}/totp" && strings.Contains(en.Detail, "second factor of ops reset")
	}
	if !found {
		t.Errorf("the reset is not audited: %+v", entries)
	}
	ops = a.mustLogin("ops", password("ops"))

	// Required: the operator's session can only enrol.
	a.want(a.as(bearer("root"), "PUT", "/api/v1/settings/sign-in", `{}`), http.StatusBadRequest, "an empty setting")
	a.want(a.as(bearer("root"), "PUT", "/api/v1/settings/sign-in", `{"second_factor_required":true}`), http.StatusOK, "require")
	r = a.as(ops, "GET", "/api/v1/hosts", "")
	a.want(r, http.StatusForbidden, "an operator without a second factor")
	if !strings.Contains(r.body, "second factor") {
		t.Errorf("the refusal does not say why: %s", r.body)
	}
	var me map[string]any
	a.as(ops, "GET", "/api/v1/me", "").decode(t, &me)
	if me["second_factor_required"] != true {
		t.Errorf("GET /me: %v", me)
	}
	a.want(a.as(ops, "POST", "/api/v1/me/totp", ""), http.StatusCreated, "enrolling while required")
}
