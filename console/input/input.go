// Package input is the console's one error type for what a caller asked
// wrongly: the API answers it with 400 and its message alone, however deep
// it was wrapped (a store update that refused the input adds "storage:
// update host …" around it, which a client must never see).
package input

import (
	"errors"
	"fmt"
)

// Error is an error caused by the caller's input.
type Error struct{ Msg string }

func (e *Error) Error() string { return e.Msg }

// Errorf makes an input Error.
func Errorf(format string, a ...any) error {
	return &Error{Msg: fmt.Sprintf(format, a...)}
}

// As returns the caller-facing message of err when it is an input error.
func As(err error) (string, bool) {
	var ie *Error
	if errors.As(err, &ie) {
		return ie.Msg, true
	}
	return "", false
}

// Conflict is a request that cannot be done in the record's present state
// (answered 409 with its message).
type Conflict struct{ Msg string }

func (e *Conflict) Error() string { return e.Msg }

// Conflictf makes a Conflict.
func Conflictf(format string, a ...any) error {
	return &Conflict{Msg: fmt.Sprintf(format, a...)}
}

// AsConflict returns the message of a Conflict.
func AsConflict(err error) (string, bool) {
	var c *Conflict
	if errors.As(err, &c) {
		return c.Msg, true
	}
	return "", false
}
