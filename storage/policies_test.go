package storage

import (
	"bytes"
	"fmt"
	"slices"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// A policy's repository template environment (backend credentials) is
// sealed at rest and opens again.
func TestPolicyTemplateEnvSealed(t *testing.T) {
	s, _ := openTest(t)
	p := Policy{ID: "pol-1", Name: "p", RepoTemplate: &RepoTemplate{URL: "rest:https://backup:***@rs/{host}/", SecretURL: "rest:https://backup:url-pass-word@rs/{host}/",
		Env: map[string]string{"AWS_SECRET_ACCESS_KEY": "very-secret-key"}}}
	if err := s.PutPolicy(p); err != nil {
		t.Fatal(err)
	}
	_ = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(policyKey("pol-1"))
		if err != nil {
			t.Fatal(err)
		}
		return it.Value(func(b []byte) error {
			if bytes.Contains(b, []byte("very-secret-key")) || bytes.Contains(b, []byte("url-pass-word")) {
				t.Error("the template's secret is stored in plaintext")
			}
			return nil
		})
	})
	got, err := s.GetPolicy("pol-1")
	if err != nil || got.RepoTemplate.Env != nil {
		t.Fatalf("read back: %+v %v", got, err)
	}
	env, err := s.TemplateEnv(got)
	if err != nil || env["AWS_SECRET_ACCESS_KEY"] != "very-secret-key" {
		t.Fatalf("opened env %v %v", env, err)
	}
	if u, err := s.TemplateURL(got); err != nil || u != "rest:https://backup:url-pass-word@rs/{host}/" || got.RepoTemplate.URL != "rest:https://backup:***@rs/{host}/" {
		t.Fatalf("template URL %q (shown %q), %v", u, got.RepoTemplate.URL, err)
	}
	// A put without SecretURL keeps the sealed URL.
	got.RepoTemplate.SecretURL = ""
	if err := s.PutPolicy(got); err != nil {
		t.Fatal(err)
	}
	got, _ = s.GetPolicy("pol-1")
	if u, _ := s.TemplateURL(got); u != "rest:https://backup:url-pass-word@rs/{host}/" {
		t.Fatalf("after a put without the URL: %q", u)
	}
}

// Many hosts' schedule sets change in few transactions: fn sees each
// host's set and record, what it changed is stored and returned, a host
// that does not exist is skipped.
func TestUpdateSchedulesMany(t *testing.T) {
	s, _ := openTest(t)
	ids := []string{"host-c", "host-a", "host-b"}
	for _, id := range ids[1:] {
		if err := s.CreateHost(Host{ID: id, Name: id, Labels: map[string]string{"role": id}}); err != nil {
			t.Fatal(err)
		}
	}
	changed, err := s.UpdateSchedulesMany(append(ids, "host-a"), func(hs *HostSchedules, h Host) (bool, error) {
		if h.Labels["role"] != hs.HostID {
			t.Errorf("fn got host %s for the set of %s", h.ID, hs.HostID)
		}
		if h.ID == "host-b" {
			return false, nil
		}
		hs.Version++
		return true, nil
	}, nil)
	if err != nil || len(changed) != 1 || changed[0].HostID != "host-a" || changed[0].Version != 1 {
		t.Fatalf("changed %+v, %v", changed, err)
	}
	if hs, _ := s.GetSchedules("host-a"); hs.Version != 1 {
		t.Errorf("stored version %d", hs.Version)
	}
	if hs, _ := s.GetSchedules("host-b"); hs.Version != 0 {
		t.Errorf("host-b changed: %d", hs.Version)
	}
}

// The durable callback gets every changed set once, batch by batch in host
// order, each already stored when it comes, and has run for all of them
// when the call returns.
func TestUpdateSchedulesManyDurable(t *testing.T) {
	s, _ := openTest(t)
	var ids []string
	for i := range 2*schedulesBatch + 7 {
		id := fmt.Sprintf("host-%04d", i)
		ids = append(ids, id)
		if err := s.CreateHost(Host{ID: id, Name: id}); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	batches := 0
	changed, err := s.UpdateSchedulesMany(ids, func(hs *HostSchedules, _ Host) (bool, error) {
		hs.Version = 9
		return true, nil
	}, func(b []HostSchedules) {
		batches++
		for _, hs := range b {
			if stored, err := s.GetSchedules(hs.HostID); err != nil || stored.Version != 9 {
				t.Errorf("%s handed on before it was stored: %+v %v", hs.HostID, stored, err)
			}
			got = append(got, hs.HostID)
		}
	})
	if err != nil || len(changed) != len(ids) {
		t.Fatalf("changed %d of %d: %v", len(changed), len(ids), err)
	}
	if !slices.Equal(got, ids) || batches != 3 {
		t.Fatalf("the callback got %d sets in %d batches (want %d in 3, in host order)", len(got), batches, len(ids))
	}
}
