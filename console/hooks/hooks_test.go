package hooks

import (
	"encoding/json"
	"strings"
	"testing"

	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/schedules"
	"github.com/restic-manager/restic-manager/storage"
)

var web1 = storage.Host{ID: "h-1", Name: "web-1", Hooks: []string{"a", "b"}, Sources: []string{"pg"}, RestoreSources: []string{"pg"}}

func TestCheckNamesWhatIsMissingAndWhatTheHostHas(t *testing.T) {
	for _, tc := range []struct {
		kind, args string
		want       string // "" accepted
	}{
		{"backup", `{"paths":["/etc"],"hooks":["a"],"sources":["pg"]}`, ""},
		{"backup", `{"paths":["/etc"],"hooks":["pg-freeze"]}`, `host web-1 has no hook "pg-freeze" (it reports: a, b)`},
		{"backup", `{"paths":["/etc"],"hooks":["x","a","y"]}`, `host web-1 has no hooks "x", "y" (it reports: a, b)`},
		{"backup", `{"sources":["mysql"]}`, `host web-1 has no source "mysql" (it reports: pg)`},
		{"restore", `{"snapshot_id":"latest","to_source":"pg"}`, ""},
		{"restore", `{"snapshot_id":"latest","to_source":"mysql"}`, `host web-1 has no source "mysql" with a restore command (it reports: pg)`},
		{"check", `{}`, ""},
		{"drill", `{"probe":"b"}`, ""},
		{"drill", `{"probe":"pg-load"}`, `host web-1 has no hook "pg-load" to probe a drill with (it reports: a, b)`},
	} {
		err := Check(web1, tc.kind, json.RawMessage(tc.args))
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%s: refused: %v", tc.args, err)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%s: error %v, want %q", tc.args, err, tc.want)
		case tc.want != "":
			if _, ok := input.As(err); !ok {
				t.Errorf("%s: %v is not an input error (the API would answer 500)", tc.args, err)
			}
		}
	}
	// A host that never reported any (an older agent) has none.
	err := Check(storage.Host{ID: "h-2"}, "backup", json.RawMessage(`{"paths":["/"],"hooks":["a"]}`))
	if err == nil || !strings.Contains(err.Error(), "host h-2 has no hook \"a\" (it reports: none)") {
		t.Errorf("host without hooks: %v", err)
	}
}

func TestCheckSchedule(t *testing.T) {
	s := schedules.Schedule{Name: "nightly", Kind: "backup", Hooks: []string{"gone"}}
	if err := CheckSchedule(web1, s); err == nil || !strings.Contains(err.Error(), `schedule "nightly": host web-1 has no hook "gone"`) {
		t.Errorf("error %v", err)
	}
	s.Hooks = []string{"b"}
	if err := CheckSchedule(web1, s); err != nil {
		t.Error(err)
	}
	d := schedules.Schedule{Name: "weekly drill", Kind: "drill", Probe: "pg-load"}
	if err := CheckSchedule(web1, d); err == nil || !strings.Contains(err.Error(), `schedule "weekly drill": host web-1 has no hook "pg-load"`) {
		t.Errorf("drill probe: %v", err)
	}
}

func TestMissingOnCountsAndCapsHosts(t *testing.T) {
	var hosts []storage.Host
	for i := range 30 {
		h := storage.Host{ID: "h-" + string(rune('a'+i%26)) + string(rune('a'+i/26)), Hooks: []string{"a"}}
		if i < 5 {
			h.Hooks = []string{"a", "freeze"}
		}
		hosts = append(hosts, h)
	}
	m := MissingOn(hosts, []schedules.Schedule{
		{Kind: "backup", Hooks: []string{"a", "freeze"}, Sources: []string{"pg"}},
		{Kind: "backup", Hooks: []string{"freeze"}},
		{Kind: "check"},
	})
	if len(m) != 2 {
		t.Fatalf("missing %+v", m)
	}
	if m[0].Name != "freeze" || m[0].Kind != KindHook || m[0].Hosts != 25 || len(m[0].HostIDs) != MaxMissingIDs || m[0].HostIDs[0] != hosts[5].ID {
		t.Errorf("freeze: %+v", m[0])
	}
	if m[1].Name != "pg" || m[1].Kind != KindSource || m[1].Hosts != 30 {
		t.Errorf("pg: %+v", m[1])
	}
	hooks, sources := Known(append(hosts, web1))
	if strings.Join(hooks, ",") != "a,b,freeze" || strings.Join(sources, ",") != "pg" {
		t.Errorf("known %v %v", hooks, sources)
	}
}
