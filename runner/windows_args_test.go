package runner

import (
	"slices"
	"strings"
	"testing"
)

// The arguments of a Windows backup, built on any OS: VSS and native paths.
func TestWindowsBackupArguments(t *testing.T) {
	old := targetOS
	t.Cleanup(func() { targetOS = old })

	spec := &Spec{Kind: KindBackup, Backup: BackupArgs{
		Paths: []string{`C:\Users\ana`, `D:\Shares`}, Excludes: []string{`C:\Users\ana\AppData`}, UseFSSnapshot: true, ExcludeCaches: true,
	}}
	targetOS = "windows"
	args, err := opBackup{}.argv(spec, resticVersion{})
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"backup", "--json", `--exclude=C:\Users\ana\AppData`, "--exclude-caches", "--use-fs-snapshot", "--", `C:\Users\ana`, `D:\Shares`}
	if !slices.Equal(args, want) {
		t.Fatalf("argv %q, want %q", args, want)
	}
	targetOS = "linux"
	if _, err := (opBackup{}).argv(spec, resticVersion{}); err == nil || !strings.Contains(err.Error(), "only available on Windows") {
		t.Fatalf("VSS on linux: %v", err)
	}
}
