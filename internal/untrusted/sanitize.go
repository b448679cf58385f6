package untrusted

import (
	"io"
	"unicode/utf8"
)

// Line makes s safe to show as one line of a terminal, a notification or a
// webhook body: escape sequences go with their payloads (CSI, OSC, DCS, APC,
// PM, SOS, and the two- and three-byte kinds), as do all other C0 and C1
// control characters, DEL, and the bidirectional and invisible formatting
// characters that make text read other than it is. Newlines and tabs become
// spaces; invalid UTF-8 becomes U+FFFD.
func Line(s string) string { return sanitize(s, false) }

// Text is Line for text of several lines: newlines and tabs are kept.
func Text(s string) string { return sanitize(s, true) }

func sanitize(s string, keepNL bool) string {
	// Most strings are clean: return them without allocating.
	if isClean(s, keepNL) {
		return s
	}
	f := filter{keepNL: keepNL}
	out := f.write(make([]byte, 0, len(s)), []byte(s))
	return string(f.flush(out))
}

func isClean(s string, keepNL bool) bool {
	if !utf8.ValidString(s) {
		return false
	}
	for _, r := range s {
		if !plain(r) && !(keepNL && (r == '\n' || r == '\t')) {
			return false
		}
	}
	return true
}

// plain reports whether r passes unchanged everywhere.
func plain(r rune) bool {
	return r >= 0x20 && r < 0x7f || r > 0x9f && !invisible(r)
}

// invisible reports the formatting characters that reorder or hide text:
// bidirectional embeddings, overrides, isolates and marks, zero-width
// characters, line and paragraph separators, the byte-order mark and the
// interlinear annotation characters.
func invisible(r rune) bool {
	switch {
	case r == 0x061c, r == 0x180e, r == 0xfeff:
		return true
	case r >= 0x200b && r <= 0x200f, r >= 0x2028 && r <= 0x202e, r >= 0x2060 && r <= 0x206f:
		return true
	case r >= 0xfff9 && r <= 0xfffb:
		return true
	}
	return false
}

// SGRWriter passes text to a terminal with its colour intact and nothing
// else: SGR sequences (ESC [ digits ; : m) are kept and every other escape
// sequence, control character (but newline and tab), C1 control and
// bidirectional or invisible formatting character is dropped, as by Text.
// It is a stream filter: a sequence may be split across writes. Call Flush
// at the end.
type SGRWriter struct {
	w   io.Writer
	f   filter
	buf []byte
}

// NewSGRWriter returns an SGRWriter writing to w.
func NewSGRWriter(w io.Writer) *SGRWriter {
	return &SGRWriter{w: w, f: filter{keepNL: true, keepSGR: true}}
}

// Write filters p to the underlying writer.
func (s *SGRWriter) Write(p []byte) (int, error) {
	s.buf = s.f.write(s.buf[:0], p)
	if _, err := s.w.Write(s.buf); err != nil {
		return 0, err
	}
	return len(p), nil
}

// Flush writes what an unfinished UTF-8 sequence at the end stands for.
func (s *SGRWriter) Flush() error {
	s.buf = s.f.flush(s.buf[:0])
	if len(s.buf) == 0 {
		return nil
	}
	_, err := s.w.Write(s.buf)
	return err
}

// States of the filter: where in an escape sequence it is.
const (
	ground    = iota
	escape    // after ESC
	csi       // in a control sequence: ESC [ or C1 CSI
	nf        // ESC followed by intermediate bytes
	str       // in the payload of OSC, DCS, APC, PM or SOS
	strEscape // ESC in such a payload: ST (ESC \) or a new sequence
)

// maxSGR bounds a kept SGR sequence; a longer one is dropped.
const maxSGR = 64

// filter is the one state machine behind Line, Text and SGRWriter. It
// follows ECMA-48 closely enough to find where each sequence ends, as a
// terminal would, so a payload never leaks out as text and text never
// disappears into a sequence the terminal would have ended.
type filter struct {
	keepNL, keepSGR bool

	state int
	seq   []byte // the CSI so far, when it may be an SGR to keep
	sgr   bool   // seq is still a possible SGR
	part  []byte // an unfinished UTF-8 sequence from the last write
}

func (f *filter) write(dst, p []byte) []byte {
	if len(f.part) > 0 {
		// The rune split across writes: start again from its first byte.
		p = append(f.part[:len(f.part):len(f.part)], p...)
		f.part = f.part[:0]
	}
	for len(p) > 0 {
		if p[0] < utf8.RuneSelf {
			dst = f.rune(dst, rune(p[0]), false)
			p = p[1:]
			continue
		}
		if !utf8.FullRune(p) {
			f.part = append(f.part[:0], p...)
			return dst
		}
		r, n := utf8.DecodeRune(p)
		dst = f.rune(dst, r, n == 1 && r == utf8.RuneError)
		p = p[n:]
	}
	return dst
}

// flush ends the input: an unfinished UTF-8 sequence is invalid, and an
// unfinished escape sequence is dropped.
func (f *filter) flush(dst []byte) []byte {
	if len(f.part) > 0 {
		for range f.part {
			dst = f.rune(dst, utf8.RuneError, true)
		}
		f.part = f.part[:0]
	}
	f.state, f.seq = ground, f.seq[:0]
	return dst
}

func (f *filter) rune(dst []byte, r rune, invalid bool) []byte {
	switch f.state {
	case escape:
		switch {
		case r == '[':
			f.startCSI(true)
		case r == ']' || r == 'P' || r == '_' || r == '^' || r == 'X':
			f.state = str
		case r >= 0x20 && r <= 0x2f:
			f.state = nf
		case r >= 0x30 && r <= 0x7e:
			f.state = ground // a two-byte sequence, gone
		case r == 0x1b:
			// ESC ESC: the first is abandoned, the second starts anew.
		default:
			f.state = ground
			return f.ground(dst, r, invalid)
		}
		return dst
	case csi:
		switch {
		case r >= 0x30 && r <= 0x3f:
			if r > '9' && r != ';' && r != ':' {
				f.sgr = false
			}
			f.addSeq(r)
		case r >= 0x20 && r <= 0x2f:
			f.sgr = false
		case r >= 0x40 && r <= 0x7e:
			f.state = ground
			if r == 'm' && f.sgr && f.keepSGR {
				dst = append(dst, f.seq...)
				dst = append(dst, 'm')
			}
		case r == 0x1b:
			f.state = escape
		default:
			// Anything else cancels the sequence (CAN, SUB) or is not
			// part of one; it is then what it would be outside.
			f.state = ground
			return f.ground(dst, r, invalid)
		}
		return dst
	case nf:
		switch {
		case r >= 0x20 && r <= 0x2f:
		case r >= 0x30 && r <= 0x7e:
			f.state = ground
		case r == 0x1b:
			f.state = escape
		default:
			f.state = ground
			return f.ground(dst, r, invalid)
		}
		return dst
	case str:
		switch r {
		case 0x07, 0x9c, 0x18, 0x1a: // BEL or ST end it, CAN and SUB cancel it
			f.state = ground
		case 0x1b:
			f.state = strEscape
		}
		return dst // the payload, gone
	case strEscape:
		if r == '\\' {
			f.state = ground
			return dst
		}
		f.state = escape
		return f.rune(dst, r, invalid)
	}
	return f.ground(dst, r, invalid)
}

func (f *filter) ground(dst []byte, r rune, invalid bool) []byte {
	switch {
	case invalid:
		return utf8.AppendRune(dst, utf8.RuneError)
	case r == 0x1b:
		f.state = escape
	case r == 0x9b: // C1 CSI: never kept, even as SGR
		f.startCSI(false)
	case r == 0x90 || r == 0x98 || r == 0x9d || r == 0x9e || r == 0x9f: // DCS SOS OSC PM APC
		f.state = str
	case r == '\n' || r == '\t':
		if f.keepNL {
			return append(dst, byte(r))
		}
		return append(dst, ' ')
	case plain(r):
		return utf8.AppendRune(dst, r)
	}
	return dst // any other control or invisible character
}

func (f *filter) startCSI(sgr bool) {
	f.state = csi
	f.sgr = sgr && f.keepSGR
	f.seq = append(f.seq[:0], 0x1b, '[')
}

func (f *filter) addSeq(r rune) {
	if !f.sgr {
		return
	}
	if len(f.seq) >= maxSGR {
		f.sgr = false
		return
	}
	f.seq = append(f.seq, byte(r))
}
