package wire

import (
	"bytes"
	"errors"
	"testing"
)

// Each decoder must never panic, and whatever it accepts must survive an
// encode/decode round trip.
func fuzzDecoder[T any, P interface {
	*T
	Payload
}](f *testing.F, seeds ...string) {
	for _, s := range seeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode[T, P](b)
		if err != nil {
			return
		}
		out, err := Encode(P(&v))
		if err != nil {
			t.Fatalf("accepted payload does not re-encode: %v", err)
		}
		if _, err := Decode[T, P](out); err != nil {
			t.Fatalf("re-encoded payload rejected: %v", err)
		}
	})
}

func FuzzDecodeStatus(f *testing.F) {
	fuzzDecoder[Status](f, `{"v":1,"online":true,"started_at":"2026-01-01T00:00:00Z","running_jobs":["a"]}`, `{"v":1,"online":false}`)
}

func FuzzDecodeCommand(f *testing.F) {
	fuzzDecoder[Command](f, `{"v":1,"job_id":"j","kind":"backup","sealed_repo":"x","issued_at":"2026-01-01T00:00:00Z","args":{"paths":["/"]}}`, `{"v":1,"job_id":"j","kind":"cancel"}`)
}

func FuzzDecodeProgress(f *testing.F) {
	fuzzDecoder[Progress](f, `{"v":1,"job_id":"j","seq":3,"percent":12.5,"bytes_done":1}`)
}

func FuzzDecodeResult(f *testing.F) {
	fuzzDecoder[Result](f, `{"v":1,"job_id":"j","status":"succeeded","ended_at":"2026-01-01T00:00:00Z","summary":{"a":1}}`)
}

func FuzzParseTopic(f *testing.F) {
	f.Add(ResultTopic("h", "j"))
	f.Add(StatusTopic("h"))
	f.Fuzz(func(t *testing.T, s string) {
		tp, err := ParseTopic(s)
		if err != nil {
			return
		}
		if tp.String() != s {
			t.Fatalf("%q parsed to %+v which prints %q", s, tp, tp.String())
		}
	})
}

func FuzzDecodeSchedulesDesired(f *testing.F) {
	fuzzDecoder[SchedulesDesired](f, `{"v":1,"version":3,"schedules":[{"id":"s1","kind":"backup","cron":"@daily","enabled":true,"jitter_s":600}]}`)
}

func FuzzDecodeSchedulesReported(f *testing.F) {
	fuzzDecoder[SchedulesReported](f, `{"v":1,"version":3,"applied_at":"2026-01-01T00:00:00Z","skipped":[{"id":"s2","reason":"bad cron"}]}`)
}

func FuzzDecodeFire(f *testing.F) {
	fuzzDecoder[Fire](f, `{"v":1,"fire_id":"f1","schedule_id":"s1","schedule_version":2,"scheduled_at":"2026-01-01T02:00:00Z","fired_at":"2026-01-01T02:03:00Z","catch_up":true}`)
}

func FuzzDecodeIndexChunk(f *testing.F) {
	fuzzDecoder[IndexChunk](f, `{"v":1,"job_id":"j","snapshot_id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef","seq":1,"nodes":[{"path":"/a","name":"a","type":"dir"}]}`)
}

// FuzzDecodeArgs: DecodeArgs never panics, its errors are ErrBadArgs, and
// what it accepts normalises to a fixed point that it accepts again.
func FuzzDecodeArgs(f *testing.F) {
	seeds := map[string]string{
		JobBackup:    `{"paths":["/home"],"excludes":["*.tmp"],"tags":["daily"],"exclude_caches":true}`,
		JobForget:    `{"retention":{"keep_daily":7,"keep_within":"1y"},"prune":true}`,
		JobPrune:     `{"max_unused":"5%"}`,
		JobCheck:     `{"read_data_subset":"1/10"}`,
		JobUnlock:    `{"remove_all":true}`,
		JobSnapshots: `{"hosts":["h"],"tags":["a,b"],"paths":["/"]}`,
		JobStats:     `{"mode":"raw-data","snapshot_ids":["latest"]}`,
		JobDiff:      `{"snapshot_a":"0123abcd","snapshot_b":"4567cdef"}`,
		JobRestore:   `{"snapshot_id":"latest","target_path":"C:\\r","include":["/a"],"overwrite":"never"}`,
		JobLs:        `{"snapshot_id":"0123abcd","path":"/C/Users"}`,
		JobIndex:     `{"snapshot_id":"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef"}`,
		JobInit:      `{}`,
	}
	for kind, args := range seeds {
		f.Add(kind, []byte(args))
	}
	f.Fuzz(func(t *testing.T, kind string, raw []byte) {
		norm, err := NormalizeArgs(kind, raw)
		if err != nil {
			if !errors.Is(err, ErrBadArgs) {
				t.Fatalf("error %v is not ErrBadArgs", err)
			}
			return
		}
		again, err := NormalizeArgs(kind, norm)
		if err != nil {
			t.Fatalf("normalised args %s refused: %v", norm, err)
		}
		if !bytes.Equal(again, norm) {
			t.Fatalf("normal form not stable: %s then %s", norm, again)
		}
	})
}
