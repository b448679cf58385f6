package transcript

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
)

// Scanner reads events from a transcript, one at a time. Lines that are not
// JSON are skipped and counted; blank lines are ignored.
type Scanner struct {
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
		// ReadBytes rather than bufio.Scanner: a tool result can make a
		// line of many megabytes, and no line limit is right for all.
		line, err := s.r.ReadBytes('\n')
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
		evs, perr := ParseLine(line)
		if perr != nil {
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
