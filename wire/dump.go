package wire

// JobDump streams one file or folder of a snapshot to the console, which
// relays it to the browser that asked for it (GET /repos/{id}/snapshots/
// {sid}/download): `restic dump`, a file as is, a folder as a tar that the
// agent gzips. The bytes never travel over MQTT and are never stored by the
// console: the agent POSTs them to DumpUploadPath on the console's HTTPS
// server (its enrolment URL, the CA it pinned, its own credential), and the
// console copies that request body into the browser's response.
const JobDump = "dump"

// Dump archives: a file goes as is; a folder as a gzip-compressed tar.
const (
	DumpRaw   = ""
	DumpTarGz = "tar.gz"
)

// DumpArgs: dump {snapshot_id, path, archive}.
type DumpArgs struct {
	SnapshotID string `json:"snapshot_id"`
	// Path is the file or folder inside the snapshot ("/" is the whole
	// snapshot, which is a folder).
	Path string `json:"path"`
	// Archive is DumpTarGz for a folder, DumpRaw for a file: the console
	// knows which from the snapshot's index.
	Archive string `json:"archive,omitempty"`
	// Size is what the index says the file, or the folder's files, hold:
	// the agent's progress counts towards it (0: unknown).
	Size uint64 `json:"size,omitempty"`
}

func (a *DumpArgs) check() error {
	if len(a.SnapshotID) != 64 || !ValidSnapshotRef(a.SnapshotID) {
		return badArgs("dump needs the full 64-hex snapshot_id")
	}
	if a.Path == "" {
		return badArgs("dump needs a path")
	}
	if err := CheckTreePath(a.Path); err != nil {
		return err
	}
	switch a.Archive {
	case DumpRaw:
		if a.Path == "/" {
			return badArgs("dump of \"/\" (the whole snapshot) needs archive %q", DumpTarGz)
		}
	case DumpTarGz:
	default:
		return badArgs("dump archive %q is not %q or empty (a file as is)", a.Archive, DumpTarGz)
	}
	return nil
}

// DumpOutput is the output of a dump job: what reached the console.
type DumpOutput struct {
	Path    string `json:"path"`
	Archive string `json:"archive,omitempty"`
	// BytesRead is what restic wrote (the file, or the folder's tar);
	// BytesSent what the console received (after gzip for a folder).
	BytesRead uint64  `json:"bytes_read"`
	BytesSent uint64  `json:"bytes_sent"`
	Seconds   float64 `json:"seconds"`
}

// DumpUploadPath is where an agent POSTs the bytes of dump job jobID, on
// the console's HTTP server (authenticated with the agent's credential).
func DumpUploadPath(jobID string) string { return "/api/v1/agent/dumps/" + jobID }
