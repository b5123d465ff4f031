package runner

import (
	"encoding/json"
	"testing"

	gojson "github.com/goccy/go-json"
)

// A node line of restic ls --json as restic 0.18 prints it.
var lsBenchLine = []byte(`{"name":"f0001234","type":"file","path":"/tmp/src/d0001/f0001234","uid":0,"gid":0,"size":7,"mode":420,"permissions":"-rw-r--r--","mtime":"2026-12-07T16:20:29.123456789Z","atime":"2026-12-07T16:20:29.123456789Z","ctime":"2026-12-07T16:20:29.123456789Z","inode":1234567,"message_type":"node","struct_type":"node"}`)

// BenchmarkLsLine decodes one node line as opLsStream does (go-json) and,
// as the reference, with encoding/json (4.7 µs vs 0.97 µs here).
func BenchmarkLsLine(b *testing.B) {
	for name, unmarshal := range map[string]func([]byte, any) error{"encoding-json": json.Unmarshal, "go-json": gojson.Unmarshal} {
		b.Run(name, func(b *testing.B) {
			for range b.N {
				var l lsStreamLine
				if err := unmarshal(lsBenchLine, &l); err != nil || l.Size != 7 || l.Mtime.IsZero() {
					b.Fatalf("%+v %v", l, err)
				}
			}
		})
	}
}

// The two decoders agree on a node line.
func TestLsLineDecodersAgree(t *testing.T) {
	var a, g lsStreamLine
	if err := json.Unmarshal(lsBenchLine, &a); err != nil {
		t.Fatal(err)
	}
	if err := gojson.Unmarshal(lsBenchLine, &g); err != nil {
		t.Fatal(err)
	}
	if a != g {
		t.Fatalf("encoding/json %+v, go-json %+v", a, g)
	}
}
