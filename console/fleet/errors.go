package fleet

import (
	"errors"

	"github.com/restic-manager/restic-manager/console/input"
	"github.com/restic-manager/restic-manager/wire"
)

// Invalid makes an input error: the caller asked for something wrong.
func Invalid(format string, a ...any) error { return input.Errorf(format, a...) }

// ArgsInput turns wire's refusal of a job's arguments into an input error
// (its message is already the caller's); other errors pass unchanged.
func ArgsInput(err error) error { return argsInput(err) }

func argsInput(err error) error {
	if errors.Is(err, wire.ErrBadArgs) {
		return &input.Error{Msg: err.Error()}
	}
	return err
}

// errNoChange ends a store update function without writing.
var errNoChange = errors.New("no change")
