package broker

import (
	"crypto/pbkdf2"
	"crypto/sha512"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// The hash must be what Mosquitto's own $7$ check recomputes; the e2e test
// proves Mosquitto accepts it, this one pins the format.
func TestMosquittoHashFormat(t *testing.T) {
	h, err := MosquittoHash("s3cret")
	if err != nil {
		t.Fatal(err)
	}
	parts := strings.Split(h, "$")
	if len(parts) != 5 || parts[0] != "" || parts[1] != "7" || parts[2] != "101" {
		t.Fatalf("hash %q is not $7$101$salt$hash", h)
	}
	salt, err1 := base64.StdEncoding.DecodeString(parts[3])
	sum, err2 := base64.StdEncoding.DecodeString(parts[4])
	if err1 != nil || err2 != nil || len(salt) != 12 || len(sum) != 64 {
		t.Fatalf("salt %d bytes, hash %d bytes (%v %v)", len(salt), len(sum), err1, err2)
	}
	want, _ := pbkdf2.Key(sha512.New, "s3cret", salt, 101, 64)
	if string(want) != string(sum) {
		t.Fatal("hash does not verify against PBKDF2-SHA512")
	}
	if h2, _ := MosquittoHash("s3cret"); h2 == h {
		t.Fatal("two hashes of one password are equal: the salt is not random")
	}
}

func TestWriteMosquittoAuth(t *testing.T) {
	dir := t.TempDir()
	err := WriteMosquittoAuth(dir, []Account{
		{Username: "restic-manager-console", Hash: "$7$101$a$b", Role: AccountConsole},
		{Username: "host-01", Hash: "$7$101$c$d", Role: AccountAgent},
		{Username: "ha", Hash: "$7$101$e$f", Role: AccountIntegration},
		{Username: "evil:user", Hash: "$7$101$g$h", Role: AccountConsole},
		{Username: "nohash", Role: AccountAgent},
	})
	if err != nil {
		t.Fatal(err)
	}
	pw, _ := os.ReadFile(filepath.Join(dir, MosquittoPasswdFile))
	if got := string(pw); got != "ha:$7$101$e$f\nhost-01:$7$101$c$d\nrestic-manager-console:$7$101$a$b\n" {
		t.Fatalf("passwd:\n%s", got)
	}
	acl, _ := os.ReadFile(filepath.Join(dir, MosquittoACLFile))
	a := string(acl)
	for _, want := range []string{
		"user restic-manager-console\ntopic readwrite restic-manager/v1/#\n",
		"user ha\ntopic read restic-manager/v1/hosts/+/status\n",
		"pattern write restic-manager/v1/hosts/%u/jobs/+/result\n",
		"pattern read restic-manager/v1/hosts/%u/commands\n",
	} {
		if !strings.Contains(a, want) {
			t.Errorf("acl lacks %q:\n%s", want, a)
		}
	}
	// Agents get nothing outside their own subtree, and no user line of
	// their own that could widen it.
	for _, line := range strings.Split(a, "\n") {
		if strings.HasPrefix(line, "pattern") && !strings.Contains(line, "restic-manager/v1/hosts/%u/") {
			t.Errorf("pattern outside the agent's subtree: %q", line)
		}
		if line == "user host-01" || strings.Contains(line, "evil") {
			t.Errorf("unexpected acl line %q", line)
		}
	}
	if fi, _ := os.Stat(filepath.Join(dir, MosquittoPasswdFile)); fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("passwd mode %v, want private", fi.Mode().Perm())
	}
}
