package storage

import (
	"bytes"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// A policy's repository template environment (backend credentials) is
// sealed at rest and opens again.
func TestPolicyTemplateEnvSealed(t *testing.T) {
	s, _ := openTest(t)
	p := Policy{ID: "pol-1", Name: "p", RepoTemplate: &RepoTemplate{URL: "s3:h/b/{host}", Env: map[string]string{"AWS_SECRET_ACCESS_KEY": "very-secret-key"}}}
	if err := s.PutPolicy(p); err != nil {
		t.Fatal(err)
	}
	_ = s.db.View(func(txn *badger.Txn) error {
		it, err := txn.Get(policyKey("pol-1"))
		if err != nil {
			t.Fatal(err)
		}
		return it.Value(func(b []byte) error {
			if bytes.Contains(b, []byte("very-secret-key")) {
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
}
