package ui

import (
	"encoding/json"
	"fmt"
	"sort"
	"strings"

	"github.com/restic-manager/restic-manager/storage"
	"github.com/restic-manager/restic-manager/wire"
)

// fact is one labelled line of a job page: what a job of its kind did, or
// one of its arguments.
type fact struct {
	ID, Label, Value string
}

// kindFacts says what a finished job did in its kind's own terms (a
// restore's files and bytes and where, a check's verdict and what it read,
// a forget's kept and removed), from its output. Backups keep their
// summary row; drills and copies have their own sections.
func kindFacts(j storage.Job) []fact {
	if len(j.Output) == 0 {
		return nil
	}
	var out []fact
	add := func(id, label, format string, a ...any) {
		out = append(out, fact{ID: "kind-" + id, Label: label, Value: fmt.Sprintf(format, a...)})
	}
	switch j.Kind {
	case wire.JobRestore:
		var o struct {
			TotalFiles, FilesRestored, FilesSkipped, FilesVerified *uint64
			TotalBytes, BytesRestored                              *uint64
			Errors                                                 int
		}
		if jsonSnake(j.Output, &o) != nil {
			return nil
		}
		var a wire.RestoreArgs
		_ = json.Unmarshal(j.Args, &a)
		// restic's total_files counts the files to restore; its
		// files_restored also counts the folders it made (7 for 2 files in
		// 5 folders, restic 0.18.1), so the files are total_files.
		files, bytes := deref(o.TotalFiles), deref(o.TotalBytes)
		if o.TotalFiles == nil {
			files = deref(o.FilesRestored)
		}
		if o.BytesRestored != nil {
			bytes = *o.BytesRestored
		}
		if o.TotalFiles != nil || o.FilesRestored != nil {
			add("restored", "Restored", "%s, %s", plural(int(files), "file"), humanBytes(bytes))
		}
		if o.FilesSkipped != nil && *o.FilesSkipped > 0 {
			add("skipped", "Skipped", "%d files already as in the snapshot", *o.FilesSkipped)
		}
		if o.FilesVerified != nil {
			add("verified", "Verified", "%d files read back and compared", *o.FilesVerified)
		}
		switch {
		case a.InPlace:
			add("into", "Into", "the original paths (in place)")
		case a.TargetPath != "":
			add("into", "Into", "%s", a.TargetPath)
		}
		if o.Errors > 0 {
			add("errors", "File errors", "%d (see the log tail)", o.Errors)
		}
	case wire.JobCheck:
		var o struct {
			OK                               bool
			NumErrors                        int
			BrokenPacks                      []string
			SuggestRepairIndex, SuggestPrune bool
		}
		if jsonSnake(j.Output, &o) != nil {
			return nil
		}
		var a wire.CheckArgs
		_ = json.Unmarshal(j.Args, &a)
		if o.OK && o.NumErrors == 0 {
			add("verdict", "Verdict", "no errors found")
		} else {
			packs := ""
			if n := len(o.BrokenPacks); n > 0 {
				packs = ", " + plural(n, "broken pack")
			}
			add("verdict", "Verdict", "%d errors found%s", o.NumErrors, packs)
		}
		if a.ReadDataSubset != "" {
			add("read", "Read", "the structure and %s of the data packs", a.ReadDataSubset)
		} else {
			add("read", "Read", "the structure (index, snapshots, trees); no data packs were read")
		}
		if o.SuggestRepairIndex {
			add("advice", "restic suggests", "repair index")
		} else if o.SuggestPrune {
			add("advice", "restic suggests", "prune")
		}
	case wire.JobForget:
		var o struct {
			Groups []struct {
				Keep, Remove []string
			} `json:"groups"`
		}
		if json.Unmarshal(j.Output, &o) != nil {
			return nil
		}
		keep, remove := 0, 0
		for _, g := range o.Groups {
			keep, remove = keep+len(g.Keep), remove+len(g.Remove)
		}
		var a wire.ForgetArgs
		_ = json.Unmarshal(j.Args, &a)
		verb := "removed"
		if a.DryRun || j.Status == storage.JobHeld {
			verb = "would remove"
		}
		add("forget", "Snapshots", "kept %d, %s %d (in %d groups)", keep, verb, remove, len(o.Groups))
	case wire.JobDump:
		var o wire.DumpOutput
		if json.Unmarshal(j.Output, &o) != nil {
			return nil
		}
		what := "file " + o.Path
		if o.Archive != "" {
			what = "folder " + o.Path + " as ." + o.Archive
		}
		add("dump", "Downloaded", "%s: %s sent to the browser (%s read from the snapshot)", what, humanBytes(o.BytesSent), humanBytes(o.BytesRead))
		if o.Seconds > 0 {
			add("dump-rate", "Rate", "%s/s", humanBytes(uint64(float64(o.BytesSent)/o.Seconds)))
		}
	case wire.JobRotateKey:
		var o wire.RotateKeyOutput
		if json.Unmarshal(j.Output, &o) != nil {
			return nil
		}
		if o.NewPasswordWorks {
			add("key", "Password", "rotated: new key %s, old key %s removed; %d keys now", short8(o.KeyID), short8(o.OldKeyID), o.Keys)
		} else {
			add("key", "Password", "unchanged: the repository keeps its old password")
		}
	}
	return out
}

// argFacts lays a job's arguments out as labelled fields.
func argFacts(raw json.RawMessage) []fact {
	var m map[string]any
	if json.Unmarshal(raw, &m) != nil || len(m) == 0 {
		return nil
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]fact, 0, len(keys))
	for _, k := range keys {
		out = append(out, fact{ID: "arg-" + k, Label: strings.ReplaceAll(k, "_", " "), Value: argText(m[k])})
	}
	return out
}

func argText(v any) string {
	switch x := v.(type) {
	case bool:
		if x {
			return "yes"
		}
		return "no"
	case float64:
		return fmt.Sprint(x)
	case string:
		return x
	case []any:
		parts := make([]string, len(x))
		for i, e := range x {
			parts[i] = argText(e)
		}
		return strings.Join(parts, ", ")
	case map[string]any:
		keys := make([]string, 0, len(x))
		for k := range x {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		parts := make([]string, len(keys))
		for i, k := range keys {
			parts[i] = strings.ReplaceAll(k, "_", " ") + " " + argText(x[k])
		}
		return strings.Join(parts, ", ")
	case nil:
		return "—"
	}
	return fmt.Sprint(v)
}

// jsonSnake decodes restic-manager's snake_case output into a struct whose
// fields are named in Go's CamelCase (TotalFiles ← total_files).
func jsonSnake(raw json.RawMessage, v any) error {
	var m map[string]json.RawMessage
	if err := json.Unmarshal(raw, &m); err != nil {
		return err
	}
	camel := make(map[string]json.RawMessage, len(m))
	for k, val := range m {
		camel[strings.ReplaceAll(k, "_", "")] = val
	}
	b, err := json.Marshal(camel)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v) // encoding/json matches names case-insensitively
}

func deref(p *uint64) uint64 {
	if p == nil {
		return 0
	}
	return *p
}

func short8(s string) string {
	if len(s) > 8 {
		return s[:8]
	}
	return s
}
