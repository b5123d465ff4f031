package runner

import (
	"context"
	"strings"
	"testing"
	"time"
)

const testSummary = `{"message_type":"summary","files_new":1,"snapshot_id":"326e7190ae4fae081e66ecaf11ad47e0926308d84d42c3dc944fa5d2167da14c"}`

// TestOutcome covers the exit-code mapping, including the codes the
// integration tests cannot provoke (11, 2, 130, unknown, restic < 0.18
// without exit_error).
func TestOutcome(t *testing.T) {
	timedOut, cancel := context.WithTimeoutCause(context.Background(), time.Nanosecond, errTimedOut)
	defer cancel()
	<-timedOut.Done()
	cancelled, cancel2 := context.WithCancel(context.Background())
	cancel2()

	for _, tc := range []struct {
		name      string
		op        operation
		stdout    []string
		stderr    []string
		code      int
		ctx       context.Context
		cancelled bool
		status    string
		errHas    string // "" : Error must be empty
		snapshot  bool
	}{
		{name: "backup ok", op: opBackup{}, stdout: []string{testSummary}, code: 0, status: StatusSucceeded, snapshot: true},
		{name: "backup no summary", op: opBackup{}, code: 0, status: StatusFailed, errHas: "restic printed no summary"},
		{name: "backup bad snapshot id", op: opBackup{}, stdout: []string{`{"message_type":"summary","snapshot_id":"xyz"}`}, status: StatusFailed, errHas: "no valid snapshot_id"},
		{name: "backup partial", op: opBackup{}, stdout: []string{testSummary}, code: 3, status: StatusPartial, snapshot: true,
			stderr: []string{
				`{"message_type":"error","error":{"message":"open /a: permission denied"},"during":"archival","item":"/a"}`,
				`{"message_type":"error","error":{"message":"open /b: permission denied"},"during":"archival","item":"/b"}`,
			},
			errHas: "some source data could not be read: 2 errors, first: open /a: permission denied"},
		{name: "backup 3 without summary", op: opBackup{}, code: 3, status: StatusFailed, errHas: "some source data could not be read"},
		{name: "exit_error wins", op: opBackup{}, code: 12, status: StatusFailed, errHas: "wrong password or no key found",
			stderr: []string{`{"message_type":"exit_error","code":12,"message":"Fatal: wrong password or no key found"}`}},
		{name: "no repo, restic 0.17 text", op: opBackup{}, code: 10, status: StatusFailed,
			errHas: "repository does not exist: unable to open config file: stat /r/config: no such file or directory",
			stderr: []string{"Fatal: unable to open config file: stat /r/config: no such file or directory", "Is there a repository at the following location?", "/r"}},
		{name: "no repo, bare", op: opBackup{}, code: 10, status: StatusFailed, errHas: "repository does not exist"},
		{name: "locked", op: opBackup{}, code: 11, status: StatusFailed, errHas: "failed to lock the repository: unable to create lock in backend: repository is already locked",
			stderr: []string{"unable to create lock in backend: repository is already locked by PID 1 on h by root (UID 0, GID 0)"}},
		{name: "wrong password, bare", op: opBackup{}, code: 12, status: StatusFailed, errHas: "wrong password"},
		{name: "generic", op: opInit{}, code: 1, status: StatusFailed, errHas: "restic failed: something broke", stderr: []string{"\x1b[2Ksomething broke"}},
		{name: "panic", op: opBackup{}, code: 2, status: StatusFailed, errHas: "restic crashed: panic: oops", stderr: []string{"panic: oops", ""}},
		{name: "interrupted", op: opBackup{}, code: 130, status: StatusFailed, errHas: "restic was interrupted"},
		{name: "unknown code", op: opBackup{}, code: 77, status: StatusFailed, errHas: "restic exited with code 77"},
		{name: "unknown code with text", op: opBackup{}, code: 77, status: StatusFailed, errHas: "restic exited with code 77: boom", stderr: []string{"boom"}},
		{name: "init ok", op: opInit{}, stdout: []string{`{"message_type":"initialized","id":"abc","repository":"/r"}`}, status: StatusSucceeded},
		{name: "init 3 is a failure", op: opInit{}, code: 3, status: StatusFailed, errHas: "some source data could not be read"},
		{name: "init exists", op: opInit{}, code: 1, status: StatusFailed, errHas: "create repository at /r failed: unable to open repository at /r: config file already exists",
			stderr: []string{`{"message_type":"exit_error","code":1,"message":"Fatal: create repository at /r failed: Fatal: unable to open repository at /r: config file already exists\n"}`}},
		{name: "cancelled", op: opBackup{}, code: 1, ctx: cancelled, cancelled: true, status: StatusCancelled, errHas: "cancelled",
			stderr: []string{`{"message_type":"exit_error","code":1,"message":"Fatal: unable to save snapshot: context canceled"}`}},
		{name: "killed", op: opBackup{}, code: 137, ctx: cancelled, cancelled: true, status: StatusCancelled, errHas: "cancelled"},
		{name: "timed out", op: opBackup{}, code: 1, ctx: timedOut, cancelled: true, status: StatusFailed, errHas: "timed out after 2s"},
		{name: "finished despite cancel", op: opBackup{}, stdout: []string{testSummary}, code: 0, ctx: cancelled, cancelled: true, status: StatusSucceeded, snapshot: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			out := newOutput(newRedactor(Repo{}))
			for _, l := range tc.stdout {
				out.stdoutLine([]byte(l), false)
			}
			for _, l := range tc.stderr {
				out.stderrLine([]byte(l), false)
			}
			ctx := tc.ctx
			if ctx == nil {
				ctx = context.Background()
			}
			res := outcome(ctx, &Spec{Timeout: 2 * time.Second}, tc.op, out, tc.code, tc.cancelled, Result{})
			if res.Status != tc.status || res.ExitCode != tc.code {
				t.Errorf("status %q code %d, want %q %d (error %q)", res.Status, res.ExitCode, tc.status, tc.code, res.Error)
			}
			if tc.errHas == "" && res.Error != "" || !strings.Contains(res.Error, tc.errHas) {
				t.Errorf("Error = %q, want it to hold %q", res.Error, tc.errHas)
			}
			if tc.snapshot != (res.SnapshotID != "") {
				t.Errorf("SnapshotID = %q", res.SnapshotID)
			}
		})
	}
}

func TestInitOutput(t *testing.T) {
	out := newOutput(newRedactor(Repo{URL: "rest:https://u:topsecret@h/r", Password: "pw-secret"}))
	out.stdoutLine([]byte(`{"message_type":"initialized","id":"2704d278","repository":"rest:https://u:topsecret@h/r"}`), false)
	res := outcome(context.Background(), &Spec{}, opInit{}, out, 0, false, Result{})
	if want := `{"id":"2704d278","repository":"[redacted]"}`; string(res.Output) != want {
		t.Fatalf("Output = %s, want %s", res.Output, want)
	}
}

func TestRedactURL(t *testing.T) {
	for in, want := range map[string]string{
		"/srv/repo":                           "/srv/repo",
		"rest:https://u:p%40ss@host:8000/r/":  "rest:https://host:8000/r/",
		"rest:http://host:8000/":              "rest:http://host:8000/",
		"s3:https://s3.amazonaws.com/b@x":     "s3:https://s3.amazonaws.com/b@x",
		"sftp:user@host:/srv/restic-repo":     "sftp:host:/srv/restic-repo",
		"sftp://user@[::1]:22//srv/repo":      "sftp://[::1]:22//srv/repo",
		" rest:https://a:b@h/ ":               "rest:https://h/",
		"rclone:remote:path":                  "rclone:remote:path",
		"rest:https://only-user@h/x?y=z@w#q@": "rest:https://h/x?y=z@w#q@",
	} {
		if got := RedactURL(in); got != want {
			t.Errorf("RedactURL(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestRedactor(t *testing.T) {
	r := newRedactor(Repo{
		URL:      "rest:https://agent:p%40ssword-1@h:8000/r/",
		Password: "hunter22",
		Env:      map[string]string{"AWS_SECRET_ACCESS_KEY": "AKIAsecretvalue", "SHORT": "abc"},
	})
	in := "pw hunter22; url rest:https://agent:p%40ssword-1@h:8000/r/; pw p%40ssword-1 and p@ssword-1; key AKIAsecretvalue; abc"
	got := r.redact(in)
	for _, s := range []string{"hunter22", "p%40ssword-1", "p@ssword-1", "AKIAsecretvalue"} {
		if strings.Contains(got, s) {
			t.Errorf("%q left in %q", s, got)
		}
	}
	if !strings.HasSuffix(got, "; abc") {
		t.Errorf("short value redacted: %q", got)
	}
}

func TestParseVersion(t *testing.T) {
	for in, want := range map[string]string{
		"restic 0.18.1 compiled with go1.26.8 on linux/amd64\n":           "0.18.1",
		"restic 0.14.0 compiled with go1.19.8 on linux/amd64":             "0.14.0",
		"restic 0.16.0-dev (compiled manually) compiled with go1.21 on x": "0.16.0-dev",
	} {
		got, err := parseVersion(in)
		if err != nil || got != want {
			t.Errorf("parseVersion(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{"", "rustic 0.5.0", "restic version unknown"} {
		if v, err := parseVersion(in); err == nil {
			t.Errorf("parseVersion(%q) = %q, want an error", in, v)
		}
	}
}

func TestValidate(t *testing.T) {
	ok := Spec{Kind: KindBackup, Repo: Repo{URL: "/r", Password: "pw"}, Backup: BackupArgs{Paths: []string{"/data", "rel"}}}
	args, err := opBackup{}.argv(&ok, resticVersion{})
	if err != nil {
		t.Fatal(err)
	}
	if got := strings.Join(args, " "); got != "backup --json -- /data rel" {
		t.Errorf("argv %q", got)
	}
	full := ok
	full.Backup = BackupArgs{Paths: []string{"/d"}, Excludes: []string{"*.tmp"}, Tags: []string{"daily", "x y"}, Hostname: "h1"}
	args, _ = opBackup{}.argv(&full, resticVersion{})
	if got := strings.Join(args, "|"); got != "backup|--json|--host=h1|--tag=daily|--tag=x y|--exclude=*.tmp|--|/d" {
		t.Errorf("argv %q", got)
	}

	for name, mutate := range map[string]func(*Spec){
		"no paths":        func(s *Spec) { s.Backup.Paths = nil },
		"empty path":      func(s *Spec) { s.Backup.Paths = []string{""} },
		"dash path":       func(s *Spec) { s.Backup.Paths = []string{"/ok", "--help"} },
		"NUL path":        func(s *Spec) { s.Backup.Paths = []string{"/a\x00b"} },
		"dash exclude":    func(s *Spec) { s.Backup.Excludes = []string{"-x"} },
		"NUL exclude":     func(s *Spec) { s.Backup.Excludes = []string{"a\x00"} },
		"dash tag":        func(s *Spec) { s.Backup.Tags = []string{"--password-command=sh"} },
		"comma tag":       func(s *Spec) { s.Backup.Tags = []string{"a,b"} },
		"dash host":       func(s *Spec) { s.Backup.Hostname = "-H" },
		"NUL host":        func(s *Spec) { s.Backup.Hostname = "h\x00" },
		"no URL":          func(s *Spec) { s.Repo.URL = " " },
		"URL newline":     func(s *Spec) { s.Repo.URL = "/r\n/x" },
		"no password":     func(s *Spec) { s.Repo.Password = "" },
		"password spaces": func(s *Spec) { s.Repo.Password = " pw" },
		"env password":    func(s *Spec) { s.Repo.Env = map[string]string{"RESTIC_PASSWORD": "x"} },
		"env command":     func(s *Spec) { s.Repo.Env = map[string]string{"restic_password_command": "x"} },
		"env bad name":    func(s *Spec) { s.Repo.Env = map[string]string{"A=B": "x"} },
		"unknown kind":    func(s *Spec) { s.Kind = "rm -rf" },
	} {
		s := ok
		s.Backup.Paths = append([]string(nil), ok.Backup.Paths...)
		mutate(&s)
		r := &Runner{Restic: "/nonexistent/restic"}
		res := r.Run(context.Background(), s, Hooks{OnStart: func(time.Time) { t.Errorf("%s: started", name) }})
		if res.Status != StatusFailed || res.ExitCode != -1 || res.Error == "" || !res.StartedAt.IsZero() {
			t.Errorf("%s: %+v", name, res)
		}
		if strings.Contains(res.Error, "cannot start") {
			t.Errorf("%s: not refused before starting restic: %q", name, res.Error)
		}
	}
}

func TestProgressFPS(t *testing.T) {
	for iv, want := range map[time.Duration]string{
		0: "2", 500 * time.Millisecond: "2", 5 * time.Second: "2",
		250 * time.Millisecond: "4", 100 * time.Millisecond: "10", time.Millisecond: "10",
	} {
		if got := progressFPS(iv); got != want {
			t.Errorf("progressFPS(%v) = %s, want %s", iv, got, want)
		}
	}
}
