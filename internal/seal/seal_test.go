package seal

import (
	"strings"
	"testing"
)

func TestSealOpen(t *testing.T) {
	id, rcpt, err := NewIdentity()
	if err != nil {
		t.Fatal(err)
	}
	ct, err := Seal(rcpt, []byte("hunter2"))
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(ct, "hunter2") {
		t.Fatal("ciphertext contains the plaintext")
	}
	pt, err := Open(id, ct)
	if err != nil || string(pt) != "hunter2" {
		t.Fatalf("Open = %q, %v", pt, err)
	}
	other, _, _ := NewIdentity()
	if _, err := Open(other, ct); err == nil {
		t.Fatal("another agent's key opened the secret")
	}
	if ValidRecipient("age1notakey") || !ValidRecipient(rcpt) {
		t.Fatal("ValidRecipient wrong")
	}
}
