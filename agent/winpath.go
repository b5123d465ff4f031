package agent

import (
	"errors"
	"fmt"
	"strings"
)

// Windows paths and restic's tree paths.
//
// restic records a Windows snapshot's targets as native paths (the
// snapshot's `paths`: `C:\Users\x`), but inside the snapshot's tree every
// volume becomes a top-level directory: the drive letter without its colon
// (`/C/Users/x`; the letter keeps the case it was given on the command
// line), and a UNC volume under its whole `\\server\share` name as a single
// directory entry (`/\\server\share/x`; see restic's
// internal/archiver/tree.go, pathComponents). Browsing (`restic ls`) and
// restoring (`--include`, `snapshot:subpath`) speak tree paths; people and
// the restore target speak native paths. These functions convert between
// the two. They are pure string functions so that they behave the same,
// and are tested, on every OS the console and agent run on.
//
// Note: restic up to at least 0.18 cannot restore a UNC tree on Windows
// itself ("invalid child node name \\server\share", restic issues #2807
// and #5573); restoring such a snapshot's subdirectory with the
// `snapshot:/\\server\share/dir` syntax works.

// ErrNotWindowsPath is returned for paths the mapping refuses.
var ErrNotWindowsPath = errors.New("not an absolute Windows path")

// WindowsPathToTree converts an absolute Windows path (`C:\Users\x`,
// `C:/Users/x`, `\\server\share\dir`) to restic's tree path (`/C/Users/x`,
// `/\\server\share/dir`). `.` and `..` elements are resolved the way
// restic's filepath.Clean does. Relative paths (`Users\x`), drive-relative
// paths (`C:x`), paths rooted on the current drive (`\Users`) and device
// paths (`\\?\…`, `\\.\…`) are refused: restic would store them under a
// tree position that depends on the agent's working directory or that it
// cannot restore.
func WindowsPathToTree(p string) (string, error) {
	if p == "" {
		return "", fmt.Errorf("%w: empty path", ErrNotWindowsPath)
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: NUL byte in %q", ErrNotWindowsPath, p)
	}
	s := strings.ReplaceAll(p, "/", `\`)
	switch {
	case strings.HasPrefix(s, `\\?\`) || strings.HasPrefix(s, `\\.\`):
		return "", fmt.Errorf("%w: device path %q (use the drive or UNC form)", ErrNotWindowsPath, p)
	case strings.HasPrefix(s, `\\`):
		server, share, rest, ok := splitUNC(s[2:])
		if !ok {
			return "", fmt.Errorf(`%w: UNC path %q needs \\server\share`, ErrNotWindowsPath, p)
		}
		elems, err := cleanElems(rest, p)
		if err != nil {
			return "", err
		}
		return "/" + strings.Join(append([]string{`\\` + server + `\` + share}, elems...), "/"), nil
	case len(s) >= 2 && isDriveLetter(s[0]) && s[1] == ':':
		if len(s) == 2 || s[2] != '\\' {
			return "", fmt.Errorf(`%w: %q is relative to the current directory of drive %c: (write %c:\…)`, ErrNotWindowsPath, p, s[0], s[0])
		}
		elems, err := cleanElems(s[3:], p)
		if err != nil {
			return "", err
		}
		return "/" + strings.Join(append([]string{s[:1]}, elems...), "/"), nil
	case strings.HasPrefix(s, `\`):
		return "", fmt.Errorf("%w: %q has no drive letter", ErrNotWindowsPath, p)
	default:
		return "", fmt.Errorf("%w: %q is relative", ErrNotWindowsPath, p)
	}
}

// TreePathToWindows converts restic's tree path of a Windows snapshot
// (`/C/Users/x`, `/\\server\share/dir`) to the native path (`C:\Users\x`,
// `\\server\share\dir`). The volume alone maps to its root (`/C` → `C:\`).
// The tree root `/` and anything that is not under a volume are refused, as
// are `..` elements and elements that contain a backslash, which no file
// name on Windows can.
func TreePathToWindows(p string) (string, error) {
	if !strings.HasPrefix(p, "/") {
		return "", fmt.Errorf("%w: tree path %q is not absolute", ErrNotWindowsPath, p)
	}
	if strings.ContainsRune(p, 0) {
		return "", fmt.Errorf("%w: NUL byte in %q", ErrNotWindowsPath, p)
	}
	rest := strings.TrimLeft(p, "/")
	if rest == "" {
		return "", fmt.Errorf("%w: the snapshot root %q holds volumes, not a path", ErrNotWindowsPath, p)
	}
	vol, rest, _ := strings.Cut(rest, "/")
	var root string
	switch {
	case len(vol) == 1 && isDriveLetter(vol[0]):
		root = vol + `:\`
	case strings.HasPrefix(vol, `\\`):
		server, share, extra, ok := splitUNC(vol[2:])
		if !ok || extra != "" {
			return "", fmt.Errorf(`%w: %q is not a \\server\share volume`, ErrNotWindowsPath, vol)
		}
		root = `\\` + server + `\` + share + `\`
	default:
		return "", fmt.Errorf("%w: tree path %q does not start with a volume (/C/… or /\\\\server\\share/…)", ErrNotWindowsPath, p)
	}
	var elems []string
	for e := range strings.SplitSeq(rest, "/") {
		switch {
		case e == "" || e == ".":
			continue
		case e == "..":
			return "", fmt.Errorf("%w: %q contains a '..' element", ErrNotWindowsPath, p)
		case strings.ContainsRune(e, '\\'):
			return "", fmt.Errorf("%w: element %q of %q contains a backslash", ErrNotWindowsPath, e, p)
		}
		elems = append(elems, e)
	}
	if len(elems) == 0 {
		return root, nil
	}
	return root + strings.Join(elems, `\`), nil
}

func isDriveLetter(c byte) bool { return 'a' <= c|0x20 && c|0x20 <= 'z' }

// splitUNC splits `server\share\rest` (after the leading `\\`).
func splitUNC(s string) (server, share, rest string, ok bool) {
	server, after, found := strings.Cut(s, `\`)
	if !found || server == "" || server == "." || server == ".." {
		return "", "", "", false
	}
	share, rest, _ = strings.Cut(after, `\`)
	if share == "" || share == "." || share == ".." {
		return "", "", "", false
	}
	return server, share, rest, true
}

// cleanElems splits a backslash-separated path below a volume root into
// its elements, dropping empty and `.` elements and resolving `..` (which
// stops at the volume root, like filepath.Clean on Windows).
func cleanElems(s, orig string) ([]string, error) {
	var out []string
	for e := range strings.SplitSeq(s, `\`) {
		switch e {
		case "", ".":
		case "..":
			if len(out) > 0 {
				out = out[:len(out)-1]
			}
		default:
			if strings.ContainsAny(e, `:*?"<>|`) {
				// ':' would be an alternate data stream; the others are
				// invalid in Windows file names.
				return nil, fmt.Errorf("%w: element %q of %q is not a valid file name", ErrNotWindowsPath, e, orig)
			}
			out = append(out, e)
		}
	}
	return out, nil
}
