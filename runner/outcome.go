package runner

import (
	"fmt"
	"strings"
)

// restic's documented exit codes.
const (
	exitOK          = 0
	exitFailure     = 1
	exitPanic       = 2 // Go runtime panic
	exitPartial     = 3 // backup: some source data could not be read; snapshot created
	exitNoRepo      = 10
	exitLocked      = 11
	exitWrongPass   = 12
	exitInterrupted = 130
)

// codeMeaning is the short explanation of an exit code, "" when unknown.
func codeMeaning(code int) string {
	switch code {
	case exitFailure:
		return "restic failed"
	case exitPanic:
		return "restic crashed"
	case exitPartial:
		return "some source data could not be read"
	case exitNoRepo:
		return "repository does not exist"
	case exitLocked:
		return "failed to lock the repository"
	case exitWrongPass:
		return "wrong password or no key found"
	case exitInterrupted:
		return "restic was interrupted"
	}
	return ""
}

// failCode ends res as failed after exit code code.
func failCode(out *output, code int, res *Result) {
	res.Status = StatusFailed
	res.Error = failureMessage(out, code)
	res.Cause = failureCause(out, code)
}

// failureCause is the Result.Cause of a failure: from the exit code
// (restic 0.17+), or from restic's text when it exited 1 (older restic).
func failureCause(out *output, code int) string {
	switch code {
	case exitNoRepo:
		return CauseNoRepository
	case exitLocked:
		return CauseLocked
	case exitWrongPass:
		return CauseWrongPassword
	case exitFailure:
		out.mu.Lock()
		defer out.mu.Unlock()
		return out.cause
	}
	return ""
}

// causeCode is the exit code restic 0.17+ uses for a cause.
func causeCode(cause string) int {
	switch cause {
	case CauseNoRepository:
		return exitNoRepo
	case CauseLocked:
		return exitLocked
	case CauseWrongPassword:
		return exitWrongPass
	}
	return 0
}

// failureMessage explains a failed run: restic's exit_error message (0.18+)
// when there is one, else the meaning of the code together with restic's
// last "Fatal:" line, or its last line. Before restic 0.17 a missing
// repository, a lock and a wrong password exit 1: their text tells them.
func failureMessage(out *output, code int) string {
	out.mu.Lock()
	exitErr, lastFatal, lastText, cause, causeText := out.exitErr, out.lastFatal, out.lastText, out.cause, out.causeText
	out.mu.Unlock()

	if exitErr != nil {
		if msg := resticMessage(exitErr.Message); msg != "" {
			return msg
		}
	}
	text := lastFatal
	if cause != "" && (code == exitFailure || code == causeCode(cause)) {
		code = causeCode(cause)
		if cause == CauseLocked || text == "" {
			// "unable to create lock in backend: repository is already
			// locked by PID …" has no "Fatal:" before 0.18.
			text = causeText
		}
	}
	if text == "" {
		text = lastText
	}
	text = resticMessage(text)
	meaning := codeMeaning(code)
	switch {
	case meaning != "" && strings.Contains(text, meaning):
		return text
	case meaning != "" && text != "":
		return meaning + ": " + text
	case meaning != "":
		return meaning
	case text != "":
		return fmt.Sprintf("restic exited with code %d: %s", code, text)
	}
	return fmt.Sprintf("restic exited with code %d", code)
}

// partialMessage explains exit code 3.
func partialMessage(out *output) string {
	out.mu.Lock()
	defer out.mu.Unlock()
	msg := ""
	if out.exitErr != nil {
		msg = resticMessage(out.exitErr.Message)
	}
	if msg == "" {
		msg = codeMeaning(exitPartial)
	}
	switch {
	case out.errorCount == 1 && len(out.errors) > 0:
		msg += ": " + out.errors[0]
	case out.errorCount > 1 && len(out.errors) > 0:
		msg += fmt.Sprintf(": %d errors, first: %s", out.errorCount, out.errors[0])
	case out.errorCount > 1:
		msg += fmt.Sprintf(": %d errors", out.errorCount)
	}
	return clip(msg)
}

// resticMessage makes one short line of a restic message: the first line,
// without "Fatal: "/"Warning: " prefixes (restic nests them).
func resticMessage(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.IndexByte(s, '\n'); i >= 0 {
		s = strings.TrimSpace(s[:i])
	}
	s = strings.ReplaceAll(s, "Fatal: ", "")
	s = strings.TrimPrefix(s, "Warning: ")
	return clip(s)
}

func clip(s string) string {
	if len(s) <= maxErrorText {
		return s
	}
	return strings.ToValidUTF8(s[:maxErrorText], "") + "…"
}
