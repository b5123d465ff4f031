package wire

import (
	"encoding/json"
	"strings"
)

// KindInfo is what the whole system knows about a job kind.
type KindInfo struct {
	Name        string
	Exclusive   bool // needs the repository to itself (restic's exclusive lock): check, forget, prune
	Destructive bool // can delete data: forget, prune (unlock only with remove_all: see Destructive())
	Schedulable bool // a schedule may run it: backup, forget, prune, check, drill, copy
	Maintenance bool // routed to the repository's maintenance host when it has one (today: the destructive ones)
	Probe       bool // the console's own probes (health, index, ls, locks): never raise job_failed alerts
	Operator    bool // may be started through the API's POST /hosts/{id}/jobs
}

// argsValue is a kind's argument type: it checks its own values.
type argsValue interface{ check() error }

// kindDef is one row of the table: the kind's properties and its arguments.
type kindDef struct {
	KindInfo
	// args returns a new zero value of the kind's arguments; nil for a kind
	// that takes none.
	args func() argsValue
}

// kinds is the table of job kinds, the one place that lists them. A new
// kind is one row here (and its arguments type with a check method); the
// agent's runner adds the restic subcommand.
var kinds = []kindDef{
	{KindInfo{Name: JobInit, Operator: true}, func() argsValue { return new(InitArgs) }},
	{KindInfo{Name: JobBackup, Schedulable: true, Operator: true}, func() argsValue { return new(BackupArgs) }},
	{KindInfo{Name: JobForget, Exclusive: true, Destructive: true, Schedulable: true, Maintenance: true, Operator: true}, func() argsValue { return new(ForgetArgs) }},
	{KindInfo{Name: JobPrune, Exclusive: true, Destructive: true, Schedulable: true, Maintenance: true, Operator: true}, func() argsValue { return new(PruneArgs) }},
	{KindInfo{Name: JobCheck, Exclusive: true, Schedulable: true, Operator: true}, func() argsValue { return new(CheckArgs) }},
	{KindInfo{Name: JobUnlock, Operator: true}, func() argsValue { return new(UnlockArgs) }},
	{KindInfo{Name: JobSnapshots, Operator: true}, func() argsValue { return new(SnapshotsArgs) }},
	{KindInfo{Name: JobStats, Operator: true}, func() argsValue { return new(StatsArgs) }},
	{KindInfo{Name: JobDiff, Operator: true}, func() argsValue { return new(DiffArgs) }},
	{KindInfo{Name: JobRestore, Operator: true}, func() argsValue { return new(RestoreArgs) }},
	{KindInfo{Name: JobLs, Probe: true, Operator: true}, func() argsValue { return new(LsArgs) }},
	{KindInfo{Name: JobLocks, Probe: true, Operator: true}, nil},
	{KindInfo{Name: JobHealth, Probe: true, Operator: true}, nil},
	{KindInfo{Name: JobIndex, Probe: true, Operator: true}, func() argsValue { return new(IndexArgs) }},
	// A drill reads (restic restore) and proves a host restorable.
	{KindInfo{Name: JobDrill, Schedulable: true, Operator: true}, func() argsValue { return new(DrillArgs) }},
	// A copy reads its repository and writes CopyArgs.ToRepoID.
	{KindInfo{Name: JobCopy, Schedulable: true, Operator: true}, func() argsValue { return new(CopyArgs) }},
	// A key rotation replaces the key the repository's password opens:
	// the console starts it (POST /repos/{id}/rotate-password, admin),
	// not POST /jobs; it needs the repository to itself.
	{KindInfo{Name: JobRotateKey, Exclusive: true, Destructive: true, Maintenance: true}, nil},
	// A dump streams a file or folder to a browser through the console
	// (GET …/download, operator): only that route starts it, since only it
	// has someone to receive the bytes. A probe: a closed tab is no alert.
	{KindInfo{Name: JobDump, Probe: true}, func() argsValue { return new(DumpArgs) }},
}

var kindIndex = func() map[string]int {
	m := make(map[string]int, len(kinds))
	for i, k := range kinds {
		m[k.Name] = i
	}
	return m
}()

func lookupDef(name string) (kindDef, bool) {
	i, ok := kindIndex[name]
	if !ok {
		return kindDef{}, false
	}
	return kinds[i], true
}

// LookupKind returns what is known about the job kind name; false when it
// is not a job kind (cancel is a command kind, not a job kind).
func LookupKind(name string) (KindInfo, bool) {
	d, ok := lookupDef(name)
	return d.KindInfo, ok
}

// Kinds returns every job kind, in the table's stable order.
func Kinds() []KindInfo {
	out := make([]KindInfo, len(kinds))
	for i, k := range kinds {
		out[i] = k.KindInfo
	}
	return out
}

// KindNames returns the names of the kinds for which pred holds (every kind
// when pred is nil), in table order: for "one of …" messages and pickers.
func KindNames(pred func(KindInfo) bool) []string {
	var out []string
	for _, k := range kinds {
		if pred == nil || pred(k.KindInfo) {
			out = append(out, k.Name)
		}
	}
	return out
}

// Destructive reports whether a job can delete data: forget and prune
// always, unlock when its arguments ask for remove_all (it then removes
// other clients' locks, which can break their runs). Arguments that do not
// decode count as not asking.
func Destructive(kind string, args json.RawMessage) bool {
	d, ok := lookupDef(kind)
	if !ok || d.Destructive {
		return ok
	}
	if d.args == nil {
		return false
	}
	a := d.args()
	da, ok := a.(interface{ destructive() bool })
	return ok && json.Unmarshal(args, a) == nil && da.destructive()
}

// oneOf lists names for a message: "a, b, c".
func oneOf(names []string) string { return strings.Join(names, ", ") }
