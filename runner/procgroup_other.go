//go:build !linux

package runner

// killGroupExcept: elsewhere restic's own kill of its command has to do.
func killGroupExcept(pgid, keep int) {}
