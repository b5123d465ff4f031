package runner

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
)

// opBackup is `restic backup --json`.
// targetOS is the OS restic runs on; tests of the Windows arguments set it.
var targetOS = runtime.GOOS

type opBackup struct{}

func (opBackup) argv(spec *Spec, _ resticVersion) ([]string, error) {
	b := &spec.Backup
	if len(b.Paths) == 0 && len(b.Sources) == 0 {
		return nil, errors.New("backup needs at least one path or source")
	}
	args, err := backupCommonArgs(b)
	if err != nil {
		return nil, err
	}
	for _, e := range b.Excludes {
		if err := checkArg("exclude", e); err != nil {
			return nil, err
		}
		args = append(args, "--exclude="+e)
	}
	for _, f := range b.ExcludeFiles {
		if err := checkArg("exclude file", f); err != nil {
			return nil, err
		}
		args = append(args, "--exclude-file="+f)
	}
	if b.OneFileSystem {
		args = append(args, "--one-file-system")
	}
	if b.ExcludeCaches {
		args = append(args, "--exclude-caches")
	}
	if b.UseFSSnapshot {
		if targetOS != "windows" {
			return nil, fmt.Errorf("use of a file system snapshot (VSS) refused: only available on Windows, not on %s", targetOS)
		}
		args = append(args, "--use-fs-snapshot")
	}
	if len(b.Paths) == 0 {
		return nil, nil // sources only: runAll builds each source's argv
	}
	args = append(args, "--")
	for _, p := range b.Paths {
		if err := checkArg("path", p); err != nil {
			return nil, err
		}
		args = append(args, p)
	}
	return args, nil
}

// backupCommonArgs are the options of every snapshot of a backup, of its
// paths and of its sources: host name and tags.
func backupCommonArgs(b *BackupArgs) ([]string, error) {
	args := []string{"backup", "--json"}
	if b.Hostname != "" {
		if err := checkArg("hostname", b.Hostname); err != nil {
			return nil, err
		}
		args = append(args, "--host="+b.Hostname)
	}
	for _, t := range b.Tags {
		if err := checkArg("tag", t); err != nil {
			return nil, err
		}
		if strings.Contains(t, ",") {
			// restic splits --tag values at commas.
			return nil, fmt.Errorf("tag %q refused: contains a comma", t)
		}
		args = append(args, "--tag="+t)
	}
	return args, nil
}

func (opBackup) progress() bool { return true }

func (opBackup) complete(out *output, code int, res *Result) {
	summary, id := out.summaryAndID()
	switch {
	case summary == nil:
		failCode(out, code, res)
		if code == 0 {
			res.Error = "restic printed no summary"
		}
		return
	case !validSnapshotID(id):
		res.Status = StatusFailed
		res.Error = fmt.Sprintf("restic's summary has no valid snapshot_id (%q)", id)
		return
	}
	res.SnapshotID = id
	if code == 0 {
		res.Status = StatusSucceeded
		return
	}
	// Exit code 3: some source data could not be read; the snapshot exists.
	res.Status = StatusPartial
	res.Error = partialMessage(out)
}

// validSnapshotID accepts restic's full (64 hex) IDs and the 8-hex short
// IDs restic 0.14 puts in the summary.
func validSnapshotID(s string) bool {
	return (len(s) == 64 || len(s) == 8) && isHex(s)
}
