package alerts

import (
	"fmt"
	"strings"
	"time"

	"github.com/restic-manager/restic-manager/storage"
)

// RuleTokenExpiring: an API token expires within TokenWarnBefore, or has
// expired and is still there (subject: the token's ID). Scripts and
// scrapers fail silently when their token ends; the week is for making a
// new one. Revoking the token resolves the alert.
const RuleTokenExpiring = "token_expiring"

// TokenWarnBefore is how long before its expiry a token raises its alert.
const TokenWarnBefore = 7 * 24 * time.Hour

// evaluateTokens fires token_expiring for the tokens that end within
// TokenWarnBefore (or have ended) and resolves it for tokens that are gone.
// Tokens are few (people make them by hand), so one list a round is cheap.
func (al *Alerts) evaluateTokens(now time.Time) {
	toks, err := al.store.ListAPITokens()
	if err != nil {
		al.log.Warn("token expiry rule: listing tokens failed", "error", err)
		return
	}
	due := map[string]bool{}
	for _, t := range toks {
		if t.ID == "" || t.ExpiresAt.IsZero() || t.ExpiresAt.Sub(now) > TokenWarnBefore {
			continue
		}
		due[t.ID] = true
		al.fire(RuleTokenExpiring, t.ID, "warning", "", "", tokenMessage(t, now))
	}
	firing, err := al.store.ListAlerts(false)
	if err != nil {
		return
	}
	for _, a := range firing {
		if a.Rule == RuleTokenExpiring && !due[a.Subject] {
			al.resolve(RuleTokenExpiring, a.Subject)
		}
	}
}

func tokenMessage(t storage.APIToken, now time.Time) string {
	if !now.Before(t.ExpiresAt) {
		return fmt.Sprintf("API token %q of %s expired at %s: requests with it are refused; make a new token and revoke this one",
			t.Name, t.User, t.ExpiresAt.UTC().Format(time.RFC3339))
	}
	left := t.ExpiresAt.Sub(now)
	in := strings.TrimSuffix(left.Round(time.Hour).String(), "0m0s")
	if left >= 48*time.Hour {
		in = fmt.Sprintf("%d days", int(left.Hours()/24))
	}
	return fmt.Sprintf("API token %q of %s expires in %s (at %s): make a new token and give it to what uses this one",
		t.Name, t.User, in, t.ExpiresAt.UTC().Format(time.RFC3339))
}
