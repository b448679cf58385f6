package cli

import (
	"errors"
	"fmt"
)

// Exit statuses, documented in docs/cli.md.
const (
	ExitOK       = 0
	ExitFailure  = 1 // the command failed; the message says why
	ExitUsage    = 2 // bad flags or arguments
	ExitRunFail  = 3 // `wait`/`run`: the agent did not succeed
	ExitCanceled = 130
)

// FlagError is a usage mistake; the command's usage is printed with it.
type FlagError struct{ err error }

func (e *FlagError) Error() string { return e.err.Error() }
func (e *FlagError) Unwrap() error { return e.err }

func flagErrorf(format string, args ...any) error {
	return &FlagError{err: fmt.Errorf(format, args...)}
}

// ExitError ends the process with Code after printing Message, if any.
type ExitError struct {
	Code    int
	Message string
}

func (e *ExitError) Error() string {
	if e.Message != "" {
		return e.Message
	}
	return fmt.Sprintf("exit status %d", e.Code)
}

// errSilent ends the command with status 1 without printing anything more:
// the command has already said what went wrong.
var errSilent = errors.New("")
