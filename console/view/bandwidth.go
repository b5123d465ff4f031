package view

import (
	"encoding/json"
	"fmt"
	"strings"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// Bandwidth is the limit a job runs under, read from its arguments: a
// scheduled job's are those in force when it fired (a schedule's window or
// its own limits), so this is what the agent passes to restic.
type Bandwidth struct {
	LimitUploadKiB   int `json:"limit_upload_kib,omitempty"`
	LimitDownloadKiB int `json:"limit_download_kib,omitempty"`
}

// String says the limits in an operator's words ("" when there are none).
func (b Bandwidth) String() string {
	var parts []string
	if b.LimitUploadKiB > 0 {
		parts = append(parts, fmt.Sprintf("upload limit %d KiB/s", b.LimitUploadKiB))
	}
	if b.LimitDownloadKiB > 0 {
		parts = append(parts, fmt.Sprintf("download limit %d KiB/s", b.LimitDownloadKiB))
	}
	return strings.Join(parts, ", ")
}

// BandwidthOf returns the bandwidth limits of a backup, copy or restore
// (nil for other kinds, or when the job has none).
func BandwidthOf(j storage.Job) *Bandwidth {
	switch j.Kind {
	case wire.JobBackup, wire.JobCopy, wire.JobRestore:
	default:
		return nil
	}
	var b Bandwidth
	if len(j.Args) == 0 || json.Unmarshal(j.Args, &b) != nil || b == (Bandwidth{}) {
		return nil
	}
	return &b
}
