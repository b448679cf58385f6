package transcript

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// The limits of reading a transcript, which the agent can write: whatever
// it holds, the host reads at most its last MaxWindow bytes and keeps at
// most MaxLine of them at once. A line longer than MaxLine (no real event
// comes near it) is skipped like a line that is not JSON.
const (
	MaxWindow = 256 << 20
	MaxLine   = 32 << 20
)

// Scanner reads events from a transcript, one at a time. Lines that are not
// JSON are skipped and counted; blank lines are ignored.
type Scanner struct {
	// Parse turns a line into events: an agent's ParseLine. Nil is
	// Claude Code's (ParseLine).
	Parse func([]byte) ([]Event, error)

	r       *bufio.Reader
	pending []Event
	ev      Event
	line    int
	skipped int
	err     error
}

// NewScanner returns a Scanner reading from r.
func NewScanner(r io.Reader) *Scanner {
	return &Scanner{r: bufio.NewReaderSize(r, 64*1024)}
}

// Scan advances to the next event, reporting false at the end of the input
// or on a read error (see Err).
func (s *Scanner) Scan() bool {
	for len(s.pending) == 0 {
		if s.err != nil {
			return false
		}
		// Not bufio.Scanner, which stops at its first long line: a tool
		// result can make a line of megabytes, and a hostile one of
		// gigabytes is skipped with bounded memory.
		line, long, err := untrusted.ReadLine(s.r, MaxLine)
		if long {
			s.line++
			s.skipped++
		}
		if err != nil && !errors.Is(err, io.EOF) {
			s.err = fmt.Errorf("read transcript line %d: %w", s.line+1, err)
		} else if err != nil {
			s.err = io.EOF
		}
		if len(line) == 0 {
			continue
		}
		s.line++
		if len(bytes.TrimSpace(line)) == 0 {
			continue
		}
		parse := s.Parse
		if parse == nil {
			parse = ParseLine
		}
		evs, perr := parse(line)
		if perr != nil || len(evs) == 0 {
			s.skipped++
			continue
		}
		s.pending = evs
	}
	s.ev, s.pending = s.pending[0], s.pending[1:]
	return true
}

// Event is the event Scan stopped at.
func (s *Scanner) Event() Event { return s.ev }

// Err is the first read error; nil at a clean end of input.
func (s *Scanner) Err() error {
	if errors.Is(s.err, io.EOF) {
		return nil
	}
	return s.err
}

// Skipped counts the lines so far that were not JSON.
func (s *Scanner) Skipped() int { return s.skipped }
