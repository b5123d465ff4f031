package storage

import (
	"bytes"
	"errors"
	"testing"

	"github.com/dgraph-io/badger/v4"
)

// The TOTP secret is stored sealed (its bytes appear nowhere in the
// record), opens for its own user only, and a confirmed factor is not
// replaced by a new enrolment until it is deleted.
func TestSecondFactorSealedAndKept(t *testing.T) {
	s, _ := openTest(t)
	secret := []byte("0123456789abcdefghij")
	if err := s.PutSecondFactor(SecondFactor{User: "ann", CreatedAt: ts(0), Recovery: []string{"h1", "h2"}}, secret); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	if err := s.db.View(func(txn *badger.Txn) error {
		var err error
		raw, err = getRaw(txn, totpKey("ann"))
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if len(raw) == 0 || bytes.Contains(raw, secret) {
		t.Fatal("the secret is stored in plaintext")
	}
	got, err := s.SecondFactorSecret("ann")
	if err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("secret %q %v", got, err)
	}
	sf, err := s.GetSecondFactor("ann")
	if err != nil || sf.Sealed != nil || sf.Confirmed || len(sf.Recovery) != 2 {
		t.Fatalf("record %+v %v", sf, err)
	}
	// Confirm, using step 7.
	if _, err := s.UpdateSecondFactor("ann", func(sf *SecondFactor, sec []byte) error {
		if !bytes.Equal(sec, secret) {
			t.Error("fn got another secret")
		}
		sf.Confirmed, sf.LastStep = true, 7
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// fn refusing writes nothing.
	refuse := errors.New("wrong code")
	if _, err := s.UpdateSecondFactor("ann", func(sf *SecondFactor, _ []byte) error { sf.LastStep = 99; return refuse }); !errors.Is(err, refuse) {
		t.Fatalf("refusal: %v", err)
	}
	if sf, _ = s.GetSecondFactor("ann"); !sf.Confirmed || sf.LastStep != 7 {
		t.Fatalf("after confirm and a refusal: %+v", sf)
	}
	if got, err := s.SecondFactorSecret("ann"); err != nil || !bytes.Equal(got, secret) {
		t.Fatalf("secret after update %q %v", got, err)
	}
	if err := s.PutSecondFactor(SecondFactor{User: "ann", CreatedAt: ts(1)}, []byte("other")); !errors.Is(err, ErrExists) {
		t.Fatalf("replacing a confirmed factor: %v", err)
	}
	if err := s.DeleteSecondFactor("ann"); err != nil {
		t.Fatal(err)
	}
	if _, err := s.GetSecondFactor("ann"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("after delete: %v", err)
	}
	if err := s.DeleteSecondFactor("ann"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("deleting twice: %v", err)
	}
	if err := s.PutSecondFactor(SecondFactor{User: "ann", CreatedAt: ts(1)}, []byte("other")); err != nil {
		t.Fatalf("enrolling again after a reset: %v", err)
	}
}
