package wire

import (
	"errors"
	"reflect"
	"strings"
	"testing"
)

// TestDecodeIndexChunkStrict: the go-json path of DecodeIndexChunk keeps
// Decode's rules (it decodes what encoding/json decodes, the same way, and
// refuses what Decode refuses).
func TestDecodeIndexChunkStrict(t *testing.T) {
	snap := strings.Repeat("ab", 32)
	good := `{"v":1,"job_id":"j1","snapshot_id":"` + snap + `","seq":2,"nodes":[` +
		`{"path":"/odd/<b>&\u2028","name":"<b>&\u2028","type":"file","size":7,"mtime":"2026-12-07T19:56:27.123456789+01:00","mode":420},` +
		`{"PATH":"/bad` + "\xff" + `","Name":"bad` + "\xff" + `","type":"dir"}]}`
	got, err := DecodeIndexChunk([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	want, err := Decode[IndexChunk]([]byte(good))
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) || got.Nodes[1].Name != "bad\uFFFD" || got.Nodes[0].Size != 7 {
		t.Fatalf("go-json %+v\nencoding/json %+v", got, want)
	}
	for name, in := range map[string]string{
		"malformed":     good[:40],
		"trailing":      good + `{}`,
		"no version":    strings.Replace(good, `"v":1,`, ``, 1),
		"wrong version": strings.Replace(good, `"v":1`, `"v":2`, 1),
		"relative path": strings.Replace(good, `"path":"/odd`, `"path":"odd`, 1),
		"array":         `[` + good + `]`,
	} {
		if _, err := DecodeIndexChunk([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}
