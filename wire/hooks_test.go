package wire

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestBackupArgsHooksAndSources(t *testing.T) {
	for _, tc := range []struct {
		raw, err string
	}{
		{`{"sources":["pg"]}`, ""},
		{`{"paths":["/etc"],"hooks":["freeze","notify"],"limit_upload_kib":1024}`, ""},
		{`{"paths":["/etc"],"hooks":["Freeze"]}`, "hook name \"Freeze\""},
		{`{"paths":["/etc"],"hooks":["rm -rf /"]}`, "hook name"},
		{`{"sources":["pg","pg"]}`, "source \"pg\" named twice"},
		{`{"paths":["/etc"],"tags":["source:pg"]}`, "mark source snapshots"},
		{`{"paths":["/etc"],"limit_download_kib":-1}`, "bandwidth limits"},
		{`{"paths":["/etc"],"command":["sh","-c","id"]}`, "unknown field"},
		{`{"hooks":["x"]}`, "at least one path or source"},
	} {
		_, err := DecodeArgs(JobBackup, []byte(tc.raw))
		switch {
		case tc.err == "" && err != nil:
			t.Errorf("%s: %v", tc.raw, err)
		case tc.err != "" && (err == nil || !strings.Contains(err.Error(), tc.err)):
			t.Errorf("%s: error %v, want %q", tc.raw, err, tc.err)
		case tc.err != "" && tc.err != "unknown field" && !errors.Is(err, ErrBadArgs):
			t.Errorf("%s: %v is not ErrBadArgs", tc.raw, err)
		}
	}
}

func TestRestoreLimits(t *testing.T) {
	if _, err := DecodeArgs(JobRestore, []byte(`{"snapshot_id":"latest","target_path":"/r","limit_download_kib":5120,"limit_upload_kib":1}`)); err != nil {
		t.Fatal(err)
	}
	for _, raw := range []string{
		`{"snapshot_id":"latest","target_path":"/r","limit_download_kib":-1}`,
		`{"snapshot_id":"latest","target_path":"/r","limit_upload_kib":10000001}`,
	} {
		if _, err := DecodeArgs(JobRestore, []byte(raw)); err == nil || !errors.Is(err, ErrBadArgs) || !strings.Contains(err.Error(), "bandwidth limits must be 0 (none) to 10000000 KiB/s") {
			t.Errorf("%s: %v", raw, err)
		}
	}
}

func TestRestoreToSource(t *testing.T) {
	if _, err := DecodeArgs(JobRestore, []byte(`{"snapshot_id":"latest","to_source":"pg"}`)); err != nil {
		t.Fatal(err)
	}
	if _, err := DecodeArgs(JobRestore, []byte(`{"snapshot_id":"latest","to_source":"pg","target_path":"/tmp/x"}`)); err == nil {
		t.Fatal("a restore to a source with a target path was accepted")
	}
}

func TestResultHookRunsBounded(t *testing.T) {
	r := Result{JobID: "j1", Status: StatusFailed, EndedAt: time.Now(),
		Hooks: []HookRun{{Name: "pg", Phase: HookBefore, ExitCode: 2, OutputTail: "denied"}}}
	if err := r.Validate(); err != nil {
		t.Fatal(err)
	}
	r.Hooks[0].OutputTail = strings.Repeat("x", MaxHookTail+1)
	if err := r.Validate(); err == nil {
		t.Fatal("an oversized hook tail was accepted")
	}
	r.Hooks[0] = HookRun{Name: "pg", Phase: "during"}
	if err := r.Validate(); err == nil {
		t.Fatal("an unknown hook phase was accepted")
	}
	s := Status{Hooks: []string{"ok", "Not OK"}}
	if err := s.Validate(); err == nil {
		t.Fatal("a status with a bad hook name was accepted")
	}
}

func TestSourceTag(t *testing.T) {
	if got := SourceOfTags([]string{"daily", SourceTag("pg")}); got != "pg" {
		t.Fatalf("SourceOfTags = %q", got)
	}
	if got := SourceOfTags([]string{"daily"}); got != "" {
		t.Fatalf("SourceOfTags = %q", got)
	}
}
