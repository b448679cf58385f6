package cli

import (
	"io"
	"os"

	"golang.org/x/term"
)

// IOStreams carries the process's standard streams. Data goes to Out,
// messages for people to ErrOut; tests swap in buffers.
type IOStreams struct {
	In     io.Reader
	Out    io.Writer
	ErrOut io.Writer

	StdinTTY  bool
	StdoutTTY bool
	// TermWidth is the terminal's width, or 0 when Out is not a terminal.
	TermWidth int
}

// System returns the process's real streams.
func System() *IOStreams {
	s := &IOStreams{In: os.Stdin, Out: os.Stdout, ErrOut: os.Stderr}
	s.StdinTTY = term.IsTerminal(int(os.Stdin.Fd()))
	s.StdoutTTY = term.IsTerminal(int(os.Stdout.Fd()))
	if s.StdoutTTY {
		if w, _, err := term.GetSize(int(os.Stdout.Fd())); err == nil {
			s.TermWidth = w
		}
	}
	return s
}
