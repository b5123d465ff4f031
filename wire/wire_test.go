package wire

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestParseTopicRoundTrip(t *testing.T) {
	for _, name := range []string{
		StatusTopic("h1"), CommandsTopic("h1"), ProgressTopic("h1", "j-1"), ResultTopic("h1", "j_2"), OutputTopic("h1", "j3"),
		SchedulesDesiredTopic("h1"), SchedulesReportedTopic("h1"), FiresTopic("h1"), HealthTopic("h1"),
		RPCTopic("h1"), RPCResponseTopic("h1"),
	} {
		tp, err := ParseTopic(name)
		if err != nil {
			t.Fatalf("ParseTopic(%q): %v", name, err)
		}
		if tp.String() != name {
			t.Errorf("round trip %q → %q", name, tp.String())
		}
	}
}

func TestParseTopicRejects(t *testing.T) {
	for _, name := range []string{
		"", "restic-manager/v1", "restic-manager/v2/hosts/h1/status", "restic-manager/v1/hosts/+/status",
		"restic-manager/v1/hosts/#", "restic-manager/v1/hosts/h1/unknown", "restic-manager/v1/hosts/h1/jobs/+/result",
		"restic-manager/v1/hosts/h1/jobs/j1/other", "restic-manager/v1/hosts/h1/status/extra",
		"restic-manager/v1/hosts/" + strings.Repeat("a", 65) + "/status", "$SYS/broker",
	} {
		if _, err := ParseTopic(name); !errors.Is(err, ErrTopic) {
			t.Errorf("ParseTopic(%q) = %v, want ErrTopic", name, err)
		}
	}
}

func TestDecodeStrict(t *testing.T) {
	good := `{"v":1,"job_id":"j1","status":"succeeded","exit_code":0,"ended_at":"2026-01-01T00:00:00Z"}`
	if r, err := DecodeResult([]byte(good)); err != nil || r.JobID != "j1" {
		t.Fatalf("good result: %v %+v", err, r)
	}
	cases := map[string]string{
		"malformed":      `{"v":1,"job_id":`,
		"no version":     `{"job_id":"j1","status":"succeeded","ended_at":"2026-01-01T00:00:00Z"}`,
		"wrong version":  `{"v":2,"job_id":"j1","status":"succeeded","ended_at":"2026-01-01T00:00:00Z"}`,
		"missing job":    `{"v":1,"status":"succeeded","ended_at":"2026-01-01T00:00:00Z"}`,
		"bad status":     `{"v":1,"job_id":"j1","status":"done","ended_at":"2026-01-01T00:00:00Z"}`,
		"no ended_at":    `{"v":1,"job_id":"j1","status":"failed"}`,
		"array":          `[1,2]`,
		"trailing":       good + `{}`,
		"bad snapshot":   `{"v":1,"job_id":"j1","status":"succeeded","ended_at":"2026-01-01T00:00:00Z","snapshot_id":"xyz"}`,
		"wildcard jobid": `{"v":1,"job_id":"+","status":"failed","ended_at":"2026-01-01T00:00:00Z"}`,
		"oversized":      `{"v":1,"job_id":"j1","status":"failed","ended_at":"2026-01-01T00:00:00Z","error":"` + strings.Repeat("x", MaxPayload) + `"}`,
	}
	for name, in := range cases {
		if _, err := DecodeResult([]byte(in)); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: err = %v, want ErrInvalid", name, err)
		}
	}
}

func TestEncodeSetsVersion(t *testing.T) {
	b, err := Encode(&Progress{JobID: "j1", Seq: 1, Percent: 50})
	if err != nil {
		t.Fatal(err)
	}
	p, err := DecodeProgress(b)
	if err != nil || p.V != 1 || p.Percent != 50 {
		t.Fatalf("decode: %v %+v", err, p)
	}
	if _, err := Encode(&Progress{JobID: "j1", Seq: 0}); err == nil {
		t.Fatal("encode of invalid progress succeeded")
	}
	if _, err := Encode(&Command{JobID: "j1", Kind: JobBackup, IssuedAt: time.Now()}); err == nil {
		t.Fatal("command without sealed repo accepted")
	}
	if _, err := Encode(&Command{JobID: "j1", Kind: "rm -rf", SealedRepo: "x", IssuedAt: time.Now()}); err == nil {
		t.Fatal("unknown command kind accepted")
	}
	if _, err := Encode(&Status{Online: true}); err == nil {
		t.Fatal("online status without started_at accepted")
	}
}

func TestEnrollRequestBounded(t *testing.T) {
	ok := EnrollRequest{Token: "rme_x", PublicKey: "age1x", Hostname: strings.Repeat("h", MaxEnrollHostname), OS: "linux", Arch: "amd64"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a plain request refused: %v", err)
	}
	for _, set := range []func(*EnrollRequest){
		func(r *EnrollRequest) { r.Hostname = strings.Repeat("h", 1<<20) },
		func(r *EnrollRequest) { r.OS = strings.Repeat("o", MaxEnrollPlatform+1) },
		func(r *EnrollRequest) { r.Arch = strings.Repeat("a", MaxEnrollPlatform+1) },
		func(r *EnrollRequest) { r.Token = strings.Repeat("t", MaxEnrollToken+1) },
		func(r *EnrollRequest) { r.PublicKey = strings.Repeat("k", MaxEnrollKey+1) },
	} {
		r := ok
		set(&r)
		if err := r.Validate(); !errors.Is(err, ErrInvalid) {
			t.Errorf("an over-long field passed: %v", err)
		}
	}
}

// With an enrolment key: a name and labels may come along, bounded and
// valid; never with a token, and never a token and a key at once.
func TestEnrollRequestWithKey(t *testing.T) {
	ok := EnrollRequest{Key: "rmk_x", Name: strings.Repeat("n", MaxEnrollName), Labels: map[string]string{"role": "web"}, PublicKey: "age1x", Hostname: "h"}
	if err := ok.Validate(); err != nil {
		t.Fatalf("a request with a key refused: %v", err)
	}
	for _, tc := range []struct {
		set  func(*EnrollRequest)
		want string
	}{
		{func(r *EnrollRequest) { r.Token = "rme_x" }, "a token or a key, not both"},
		{func(r *EnrollRequest) { r.Key = strings.Repeat("k", MaxEnrollToken+1) }, "key: at most"},
		{func(r *EnrollRequest) { r.Name = strings.Repeat("n", MaxEnrollName+1) }, "name: at most"},
		{func(r *EnrollRequest) { r.Labels = map[string]string{"Role": "web"} }, `label key "Role"`},
		{func(r *EnrollRequest) { r.Key, r.Token = "", "rme_x" }, "come with an enrolment key only"},
	} {
		r := ok
		tc.set(&r)
		if err := r.Validate(); !errors.Is(err, ErrInvalid) || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", r, err, tc.want)
		}
	}
}
