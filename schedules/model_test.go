package schedules

import (
	"strings"
	"testing"
	"time"
)

func intp(i int) *int { return &i }

func TestValidate(t *testing.T) {
	ok := Schedule{Name: "n", Kind: "backup", Cron: "@daily", Enabled: true, RepoID: "r", Paths: []string{"/home"}}
	if err := ok.Validate(); err != nil {
		t.Fatalf("valid schedule refused: %v", err)
	}
	for want, mut := range map[string]func(*Schedule){
		"name is required":       func(s *Schedule) { s.Name = " " },
		"not one of":             func(s *Schedule) { s.Kind = "restore" },
		"61":                     func(s *Schedule) { s.Cron = "61 * * * *" },
		"time zone":              func(s *Schedule) { s.Timezone = "Nowhere/City" },
		"repo_id is required":    func(s *Schedule) { s.RepoID = "" },
		"at least one path":      func(s *Schedule) { s.Paths = nil },
		"hook name":              func(s *Schedule) { s.Hooks = []string{"sh -c id"} },
		"source \"pg\" named":    func(s *Schedule) { s.Sources = []string{"pg", "pg"} },
		"bandwidth limits":       func(s *Schedule) { s.LimitUploadKiB = -5 },
		"would be read as an op": func(s *Schedule) { s.Paths = []string{"--password-command=x"} },
		"control characters":     func(s *Schedule) { s.Tags = []string{"a\nb"} },
		"jitter_s":               func(s *Schedule) { s.JitterS = intp(-1) },
		"retention":              func(s *Schedule) { s.Kind = "forget" },
		"keep_within":            func(s *Schedule) { s.Kind = "forget"; s.Retention = &Retention{KeepWithin: "a week"} },
		"negative":               func(s *Schedule) { s.Kind = "forget"; s.Retention = &Retention{KeepLast: -1, KeepDaily: 3} },
		"read_data_subset":       func(s *Schedule) { s.Kind = "check"; s.ReadDataSubset = "lots" },
		"max_unused":             func(s *Schedule) { s.Kind = "prune"; s.MaxUnused = "-5%" },
		"may only hold":          func(s *Schedule) { s.ID = "a/b" },
	} {
		s := ok
		mut(&s)
		err := s.Validate()
		if err == nil || !strings.Contains(err.Error(), strings.TrimSuffix(want, " op")) {
			t.Errorf("%s: error %v", want, err)
		}
	}
	for _, s := range []Schedule{
		{Name: "f", Kind: "forget", Cron: "@weekly", RepoID: "r", Retention: &Retention{KeepDaily: 7, KeepWithin: "1y6m"}, Prune: true},
		{Name: "c", Kind: "check", Cron: "@monthly", RepoID: "r", ReadDataSubset: "1/10"},
		{Name: "c2", Kind: "check", Cron: "@monthly", RepoID: "r", ReadDataSubset: "2.5%"},
		{Name: "p", Kind: "prune", Cron: "@monthly", RepoID: "r", MaxUnused: "unlimited"},
		{Name: "dump", Kind: "backup", Cron: "@daily", RepoID: "r", Sources: []string{"pg"}, Hooks: []string{"notify"}},
	} {
		if err := s.Validate(); err != nil {
			t.Errorf("%s: %v", s.Name, err)
		}
	}
	if err := ValidateSet([]Schedule{ok, ok}); err == nil || !strings.Contains(err.Error(), "twice") {
		t.Errorf("duplicate names: %v", err)
	}
}

func TestEntryCarriesNoPaths(t *testing.T) {
	s := Schedule{ID: "s1", Name: "n", Kind: "backup", Cron: "0 2 * * *", Enabled: true, RepoID: "r", Paths: []string{"/secret/place"}}
	e := s.Entry()
	if e.JitterS != int(DefaultJitter/time.Second) {
		t.Errorf("default jitter %d", e.JitterS)
	}
	s.Cron = "@every 1h"
	if s.Entry().JitterS != 0 {
		t.Error("@every got a default jitter")
	}
	s.JitterS = intp(60)
	if s.Entry().JitterS != 60 {
		t.Error("explicit jitter ignored")
	}
}

func TestEntryNextRunsIncludeOffset(t *testing.T) {
	s := Schedule{ID: "s1", Name: "n", Kind: "backup", Cron: "0 2 * * *", Enabled: true, JitterS: intp(600)}
	from := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	runs, err := EntryNextRuns("host-1", s.Entry(), from, 2)
	if err != nil {
		t.Fatal(err)
	}
	off := Offset("host-1", "s1", 10*time.Minute)
	want := time.Date(2026, 1, 1, 2, 0, 0, 0, time.UTC).Add(off)
	if len(runs) != 2 || !runs[0].Equal(want) || runs[1].Sub(runs[0]) != 24*time.Hour {
		t.Fatalf("runs %v, want first at %s", runs, want)
	}
}

func TestJobArgs(t *testing.T) {
	for _, tc := range []struct {
		s    Schedule
		want string
	}{
		{Schedule{Kind: "backup", Paths: []string{"/home"}, Excludes: []string{"*.tmp"}, Tags: []string{"daily"}, ReadDataSubset: "1/2"},
			`{"paths":["/home"],"excludes":["*.tmp"],"tags":["daily"]}`},
		{Schedule{Kind: "forget", Retention: &Retention{KeepDaily: 7}, Prune: true, Tags: []string{"daily"}, Paths: []string{"/x"}},
			`{"retention":{"keep_daily":7},"tags":["daily"],"prune":true}`},
		{Schedule{Kind: "backup", Sources: []string{"pg"}, Hooks: []string{"freeze"}, LimitUploadKiB: 512, LimitDownloadKiB: 2048},
			`{"paths":null,"hooks":["freeze"],"sources":["pg"],"limit_upload_kib":512,"limit_download_kib":2048}`},
		{Schedule{Kind: "prune", MaxUnused: "5%"}, `{"max_unused":"5%"}`},
		{Schedule{Kind: "check", ReadDataSubset: "1/10"}, `{"read_data_subset":"1/10"}`},
		{Schedule{Kind: "check"}, `{}`},
	} {
		got, err := tc.s.JobArgs()
		if err != nil || string(got) != tc.want {
			t.Errorf("%s: %s, %v; want %s", tc.s.Kind, got, err, tc.want)
		}
	}
	if _, err := (Schedule{Kind: "forget"}).JobArgs(); err == nil || err.Error() != "forget schedule without retention" {
		t.Errorf("forget without retention: %v", err)
	}
	if _, err := (Schedule{Kind: "restore"}).JobArgs(); err == nil {
		t.Error("restore schedule made args")
	}
}

func TestKindsFromWire(t *testing.T) {
	if len(Kinds) != 6 || !Kinds["backup"] || !Kinds["forget"] || !Kinds["prune"] || !Kinds["check"] || !Kinds["drill"] || !Kinds["copy"] {
		t.Errorf("Kinds = %v", Kinds)
	}
	err := Schedule{Name: "n", Kind: "init", Cron: "@daily", RepoID: "r"}.Validate()
	if err == nil || err.Error() != `schedule "n": kind "init" is not one of backup, forget, prune, check, drill, copy` {
		t.Errorf("init schedule: %v", err)
	}
}
