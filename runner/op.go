package runner

import (
	"fmt"
	"strings"
)

// operation is one restic subcommand. Adding a subcommand is one op_*.go file
// implementing it plus one line in operations.
type operation interface {
	// argv validates spec and returns the subcommand with its arguments. The
	// core adds the global flags (--repository-file, --password-file,
	// --cache-dir) in front. An error means restic is never started.
	argv(spec *Spec) ([]string, error)
	// progress reports whether restic sends status lines for this
	// subcommand (the core then sets RESTIC_PROGRESS_FPS and throttles them).
	progress() bool
	// complete turns restic's output after exit code 0 or 3 into res: it
	// sets Status, and Output, SnapshotID or Error as they apply. Other exit
	// codes are failures the core handles alone.
	complete(out *output, code int, res *Result)
}

var operations = map[string]operation{
	KindInit:   opInit{},
	KindBackup: opBackup{},
}

// checkArg refuses a value restic could take for an option, or that cannot
// be passed in argv at all.
func checkArg(what, s string) error {
	switch {
	case s == "":
		return fmt.Errorf("%s must not be empty", what)
	case strings.HasPrefix(s, "-"):
		return fmt.Errorf("%s %q refused: must not start with \"-\"", what, s)
	case strings.ContainsRune(s, 0):
		return fmt.Errorf("%s %q refused: contains a NUL byte", what, s)
	}
	return nil
}
