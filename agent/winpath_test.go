package agent

import (
	"errors"
	"testing"
)

func TestWindowsPathToTree(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{`C:\Users\x`, "/C/Users/x"},
		{`C:\`, "/C"},
		{`c:\users`, "/c/users"}, // restic keeps the case given to it
		{`C:/Users/x`, "/C/Users/x"},
		{`C:\Users\\x\`, "/C/Users/x"},
		{`C:\Users\.\x\..\y`, "/C/Users/y"},
		{`C:\..\..\Windows`, "/C/Windows"}, // .. stops at the volume root
		{`D:\My Documents\a b.txt`, "/D/My Documents/a b.txt"},
		{`C:\Users\José\Документы`, "/C/Users/José/Документы"},
		{`\\server\share\x\y`, `/\\server\share/x/y`},
		{`\\server\share`, `/\\server\share`},
		{`\\server\share\`, `/\\server\share`},
		{`//server/share/x`, `/\\server\share/x`},
		{`\\10.0.0.5\c$\data`, `/\\10.0.0.5\c$/data`},
	} {
		got, err := WindowsPathToTree(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("WindowsPathToTree(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestWindowsPathToTreeRefuses(t *testing.T) {
	for _, in := range []string{
		"",
		`Users\x`,    // relative
		`.\x`,        // relative
		`..\x`,       // relative
		`C:`,         // drive-relative: the current directory of C:
		`C:Users`,    // drive-relative
		`\Users\x`,   // rooted on the current drive
		`/home/x`,    // a POSIX path is rooted on the current drive too
		`\\server`,   // UNC without share
		`\\server\`,  // UNC with empty share
		`\\\share\x`, // UNC without server
		`\\?\C:\x`,   // device path
		`\\.\PhysicalDrive0`,
		`C:\a\file.txt:stream`, // alternate data stream
		`C:\a\b*`,
		"C:\\a\x00b",
		`1:\x`,
	} {
		got, err := WindowsPathToTree(in)
		if err == nil {
			t.Errorf("WindowsPathToTree(%q) = %q, want an error", in, got)
			continue
		}
		if !errors.Is(err, ErrNotWindowsPath) {
			t.Errorf("WindowsPathToTree(%q): error %v is not ErrNotWindowsPath", in, err)
		}
	}
}

func TestTreePathToWindows(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"/C/Users/x", `C:\Users\x`},
		{"/C", `C:\`},
		{"/C/", `C:\`},
		{"/c/users", `c:\users`},
		{"/C//Users/./x/", `C:\Users\x`},
		{"/D/My Documents/a b.txt", `D:\My Documents\a b.txt`},
		{`/\\server\share/x/y`, `\\server\share\x\y`},
		{`/\\server\share`, `\\server\share\`},
		{`/\\10.0.0.5\c$/data`, `\\10.0.0.5\c$\data`},
	} {
		got, err := TreePathToWindows(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("TreePathToWindows(%q) = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestTreePathToWindowsRefuses(t *testing.T) {
	for _, in := range []string{
		"",
		"/",
		"C/Users", // not absolute
		"/home/x", // a Linux snapshot's tree
		"/CC/x",   // not a drive letter
		"/1/x",    // not a drive letter
		"/C/Users/../../x",
		`/C/a\b`,      // no Windows file name holds a backslash
		`/\\server/x`, // UNC volume without share
		`/\\server\share\extra/x`,
		"/C/a\x00b",
	} {
		got, err := TreePathToWindows(in)
		if err == nil {
			t.Errorf("TreePathToWindows(%q) = %q, want an error", in, got)
			continue
		}
		if !errors.Is(err, ErrNotWindowsPath) {
			t.Errorf("TreePathToWindows(%q): error %v is not ErrNotWindowsPath", in, err)
		}
	}
}

// Every native path the mapping accepts comes back unchanged through the
// tree form, once cleaned.
func TestWindowsPathRoundTrip(t *testing.T) {
	for _, in := range []string{
		`C:\`, `C:\Users\x`, `z:\a b\c`, `\\server\share\`, `\\server\share\dir\f.txt`,
	} {
		tree, err := WindowsPathToTree(in)
		if err != nil {
			t.Fatalf("WindowsPathToTree(%q): %v", in, err)
		}
		back, err := TreePathToWindows(tree)
		if err != nil {
			t.Fatalf("TreePathToWindows(%q): %v", tree, err)
		}
		if back != in {
			t.Errorf("%q → %q → %q", in, tree, back)
		}
	}
}

func FuzzWindowsPathToTree(f *testing.F) {
	for _, s := range []string{`C:\Users\x`, `\\server\share\x`, `C:..`, `\\?\C:\`, `/C/x`} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		tree, err := WindowsPathToTree(in)
		if err != nil {
			return
		}
		// Whatever is accepted maps back to a native path whose tree form
		// is the same tree path.
		back, err := TreePathToWindows(tree)
		if err != nil {
			t.Fatalf("%q → %q, which TreePathToWindows refuses: %v", in, tree, err)
		}
		again, err := WindowsPathToTree(back)
		if err != nil || again != tree {
			t.Fatalf("%q → %q → %q → %q, %v", in, tree, back, again, err)
		}
	})
}
