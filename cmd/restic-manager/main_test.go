package main

import (
	"os"
	"path/filepath"
	"testing"
)

func TestByteRateFlag(t *testing.T) {
	for in, want := range map[string]float64{
		"16MiB": 16 << 20, "500KiB": 500 << 10, "1048576": 1 << 20, "2G": 2 << 30, " 1.5 MiB ": 1.5 * (1 << 20), "-1": -1,
	} {
		var b byteRate
		if err := b.Set(in); err != nil || float64(b) != want {
			t.Errorf("%q: %v %v, want %v", in, float64(b), err, want)
		}
	}
	for _, in := range []string{"", "0", "-2", "lots", "MiB", "NaN"} {
		var b byteRate
		if err := b.Set(in); err == nil {
			t.Errorf("%q accepted as %v", in, float64(b))
		}
	}
	f := serverFlags{agentMsgRate: 50, agentByteRate: -1}
	l := f.limits()
	if l.AgentMessages.Rate != 50 || l.AgentBytes.Rate != -1 {
		t.Errorf("limits %+v", l)
	}
}

func TestReadToken(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "token")
	if err := os.WriteFile(p, []byte("  s3cret\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if tok, err := readToken(p); err != nil || tok != "s3cret" {
		t.Errorf("token %q %v", tok, err)
	}
	if tok, err := readToken(""); err != nil || tok != "" {
		t.Errorf("no file: %q %v", tok, err)
	}
	empty := filepath.Join(dir, "empty")
	_ = os.WriteFile(empty, []byte("\n"), 0o600)
	if _, err := readToken(empty); err == nil {
		t.Error("an empty token file was accepted: /metrics would need an empty token")
	}
	if _, err := readToken(filepath.Join(dir, "missing")); err == nil {
		t.Error("a missing token file was accepted")
	}
}
