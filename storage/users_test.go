package storage

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/dgraph-io/badger/v4"
)

// Records written before users could be disabled and tokens could expire or
// carry a role read back as enabled, never-expiring and following the user.
func TestOldUserAndTokenRecordsStayReadable(t *testing.T) {
	s, _ := openTest(t)
	if err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set(userKey("old"), []byte(`{"v":1,"d":{"name":"old","password_hash":"x","role":"operator","created_at":"2025-01-01T00:00:00Z"}}`)); err != nil {
			return err
		}
		key, _ := hashKey(tokPrefix, hash("rmt_old"))
		return txn.Set(key, []byte(`{"v":1,"d":{"id":"tok-old","name":"ci","user":"old","created_at":"2025-01-01T00:00:00Z"}}`))
	}); err != nil {
		t.Fatal(err)
	}
	u, err := s.GetUser("old")
	if err != nil || u.Disabled || u.Role != "operator" {
		t.Fatalf("old user: %+v %v", u, err)
	}
	tok, err := s.GetAPIToken(hash("rmt_old"))
	if err != nil || !tok.ExpiresAt.IsZero() || tok.Role != "" {
		t.Fatalf("old token: %+v %v", tok, err)
	}
}

func TestUpdateAndDeleteUser(t *testing.T) {
	s, _ := openTest(t)
	if err := s.CreateUser(User{Name: "ann", PasswordHash: "h1", Role: "viewer", CreatedAt: ts(0)}); err != nil {
		t.Fatal(err)
	}
	u, err := s.UpdateUser("ann", func(u *User) error { u.Role, u.Disabled, u.Name = "operator", true, "bob"; return nil })
	if err != nil || u.Name != "ann" || u.Role != "operator" || !u.Disabled {
		t.Fatalf("update: %+v %v", u, err)
	}
	if got, _ := s.GetUser("ann"); got != u {
		t.Fatalf("stored %+v, want %+v", got, u)
	}
	refused := fmt.Errorf("no")
	if _, err := s.UpdateUser("ann", func(u *User) error { u.Role = "admin"; return refused }); err == nil {
		t.Fatal("a refused update succeeded")
	}
	if got, _ := s.GetUser("ann"); got.Role != "operator" {
		t.Fatalf("a refused update was stored: %+v", got)
	}
	_, err = s.UpdateUser("nobody", func(*User) error { return nil })
	wantErr(t, err, ErrNotFound)
	if err := s.DeleteUser("ann"); err != nil {
		t.Fatal(err)
	}
	_, err = s.GetUser("ann")
	wantErr(t, err, ErrNotFound)
	wantErr(t, s.DeleteUser("ann"), ErrNotFound)
}

// EndSessions finds a user's sessions among many (more than one page),
// leaves other users' live sessions and removes expired ones on the way.
func TestEndSessionsOfOneUser(t *testing.T) {
	s, _ := openTest(t)
	now := time.Now()
	live, old := now.Add(time.Hour), now.Add(-time.Hour)
	const mine = 2*deleteBatch + 7
	if err := s.db.Update(func(txn *badger.Txn) error {
		put := func(i int, user string, exp time.Time) error {
			key, _ := hashKey(sessPrefix, hash(fmt.Sprintf("%s-%d", user, i)))
			return setJSON(txn, key, Session{User: user, CreatedAt: now, ExpiresAt: exp})
		}
		for i := range mine {
			if err := put(i, "ann", live); err != nil {
				return err
			}
		}
		for i := range 30 {
			if err := put(i, "bob", live); err != nil {
				return err
			}
			if err := put(i, "cat", old); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	n, err := s.EndSessions("ann", now)
	if err != nil || n != mine {
		t.Fatalf("ended %d (%v), want %d", n, err, mine)
	}
	left := map[string]int{}
	_ = s.db.View(func(txn *badger.Txn) error {
		opts := badger.DefaultIteratorOptions
		opts.Prefix = []byte(sessPrefix)
		it := txn.NewIterator(opts)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var sess Session
			_ = it.Item().Value(func(b []byte) error { return decode(b, &sess) })
			left[sess.User]++
		}
		return nil
	})
	if len(left) != 1 || left["bob"] != 30 {
		t.Fatalf("sessions left: %v, want bob's 30 only", left)
	}
	if _, err := s.GetSession(hash("bob-3"), now); err != nil {
		t.Fatalf("another user's session ended: %v", err)
	}
	if _, err := s.GetSession(hash("ann-3"), now); err == nil {
		t.Fatal("an ended session still authenticates")
	}
}

func TestDeleteAPITokensOfOneUser(t *testing.T) {
	s, _ := openTest(t)
	for i := range 5 {
		for _, u := range []string{"ann", "bob"} {
			if err := s.PutAPIToken(hash(fmt.Sprintf("%s-%d", u, i)), APIToken{ID: fmt.Sprintf("tok-%s-%d", u, i), Name: "t", User: u}); err != nil {
				t.Fatal(err)
			}
		}
	}
	n, err := s.DeleteAPITokensOf("ann")
	if err != nil || n != 5 {
		t.Fatalf("deleted %d (%v), want 5", n, err)
	}
	all, _ := s.ListAPITokens()
	if len(all) != 5 {
		t.Fatalf("%d tokens left, want bob's 5", len(all))
	}
	for _, tok := range all {
		if tok.User != "bob" {
			t.Errorf("token of %s left", tok.User)
		}
	}
}

func TestUpdateAndDeleteChannel(t *testing.T) {
	s, _ := openTest(t)
	if _, err := s.CreateChannel(Channel{ID: "chan-1", Name: "ops", Kind: "webhook", MinSeverity: "warning"}, []byte(`{"url":"https://a"}`)); err != nil {
		t.Fatal(err)
	}
	ch, err := s.UpdateChannel("chan-1", func(ch *Channel, cfg []byte) ([]byte, error) {
		if string(cfg) != `{"url":"https://a"}` {
			t.Errorf("fn got config %s", cfg)
		}
		ch.Name = "oncall"
		return []byte(`{"url":"https://b"}`), nil
	})
	if err != nil || ch.Name != "oncall" || ch.Sealed != nil {
		t.Fatalf("update: %+v %v", ch, err)
	}
	if cfg, err := s.ChannelConfig("chan-1"); err != nil || string(cfg) != `{"url":"https://b"}` {
		t.Fatalf("config after update: %s %v", cfg, err)
	}
	if err := s.DeleteChannel("chan-1"); err != nil {
		t.Fatal(err)
	}
	if chans, _ := s.ListChannels(); len(chans) != 0 {
		t.Fatalf("channels after delete: %v", chans)
	}
	wantErr(t, s.DeleteChannel("chan-1"), ErrNotFound)
	_, err = s.UpdateChannel("chan-1", func(*Channel, []byte) ([]byte, error) { return nil, nil })
	wantErr(t, err, ErrNotFound)
}

func TestDeleteIntegrationUser(t *testing.T) {
	s, _ := openTest(t)
	if err := s.PutIntegrationUser(IntegrationUser{Name: "ha", PasswordHash: hash("pw")}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteIntegrationUser("ha"); err != nil {
		t.Fatal(err)
	}
	_, err := s.GetIntegrationUser("ha")
	wantErr(t, err, ErrNotFound)
	wantErr(t, s.DeleteIntegrationUser("ha"), ErrNotFound)
}

// Whatever a caller puts in an audit entry, the stored record is bounded.
func TestAuditEntryBounded(t *testing.T) {
	s, _ := openTest(t)
	huge := strings.Repeat("é", 1<<19) // 1 MiB of two-byte characters
	if err := s.AppendAudit(AuditEntry{Actor: huge, Kind: "user", Action: "login failed", Target: huge, Remote: huge, Detail: huge}); err != nil {
		t.Fatal(err)
	}
	got, _, err := s.ListAudit(AuditQuery{})
	if err != nil || len(got) != 1 {
		t.Fatalf("%d entries, %v", len(got), err)
	}
	e := got[0]
	for name, v := range map[string]string{"actor": e.Actor, "target": e.Target, "remote": e.Remote} {
		if len(v) > MaxAuditField || !utf8.ValidString(v) || !strings.HasSuffix(v, "…") {
			t.Errorf("%s: %d bytes, valid UTF-8 %v", name, len(v), utf8.ValidString(v))
		}
	}
	if len(e.Detail) > MaxAuditDetail || !utf8.ValidString(e.Detail) {
		t.Errorf("detail: %d bytes", len(e.Detail))
	}
	if Truncate("short", 10) != "short" {
		t.Error("a short string was cut")
	}
}

// A token's last use is written at most once per interval: a second use
// within it changes nothing; a use after it moves the time. A revoked
// token is not found.
func TestTouchAPIToken(t *testing.T) {
	s, _ := openTest(t)
	h := hash("rmt_touch")
	if err := s.PutAPIToken(h, APIToken{ID: "tok-t", Name: "ci", User: "ann"}); err != nil {
		t.Fatal(err)
	}
	at := ts(0)
	if wrote, err := s.TouchAPIToken(h, at, time.Minute); err != nil || !wrote {
		t.Fatalf("first use: wrote %v, %v", wrote, err)
	}
	if wrote, err := s.TouchAPIToken(h, at.Add(30*time.Second), time.Minute); err != nil || wrote {
		t.Fatalf("a use 30s later: wrote %v, %v", wrote, err)
	}
	if tok, _ := s.GetAPIToken(h); !tok.LastUsedAt.Equal(at) {
		t.Errorf("last use %v, want %v", tok.LastUsedAt, at)
	}
	if wrote, err := s.TouchAPIToken(h, at.Add(2*time.Minute), time.Minute); err != nil || !wrote {
		t.Fatalf("a use 2m later: wrote %v, %v", wrote, err)
	}
	if tok, _ := s.GetAPIToken(h); !tok.LastUsedAt.Equal(at.Add(2 * time.Minute)) {
		t.Errorf("last use %v, want 2m later", tok.LastUsedAt)
	}
	if err := s.DeleteAPIToken("tok-t"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.TouchAPIToken(h, at.Add(time.Hour), time.Minute); !errors.Is(err, ErrNotFound) {
		t.Errorf("touching a revoked token: %v", err)
	}
}
