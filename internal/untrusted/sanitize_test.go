package untrusted

import (
	"bytes"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestText(t *testing.T) {
	tests := []struct {
		name, in, text, line string
	}{
		{"plain", "fix the parser", "fix the parser", "fix the parser"},
		{"unicode", "größe · 日本 ✓", "größe · 日本 ✓", "größe · 日本 ✓"},
		{"newline and tab", "a\n\tb", "a\n\tb", "a  b"},
		{"carriage return", "a\r\nb\rc", "a\nbc", "a bc"},
		{"OSC 52 clipboard, BEL", "x\x1b]52;c;cm0gLXJmIH4=\x07y", "xy", "xy"},
		{"OSC title, ST", "x\x1b]0;pwned\x1b\\y", "xy", "xy"},
		{"OSC 8 hyperlink", "\x1b]8;;http://evil/\x1b\\click\x1b]8;;\x1b\\", "click", "click"},
		{"line erase", "ok\x1b[2K\x1b[1Aevil", "okevil", "okevil"},
		{"SGR dropped", "\x1b[31mred\x1b[0m", "red", "red"},
		{"private CSI", "\x1b[?1049hscreen", "screen", "screen"},
		{"C1 CSI", "a\u009b2Kb", "ab", "ab"},
		{"C1 OSC", "a\u009d0;title\u009cb", "ab", "ab"},
		{"C1 other", "a\u0085b\u0080", "ab", "ab"},
		{"raw 8-bit CSI byte", "a\x9b2Kb", "a\uFFFD2Kb", "a\uFFFD2Kb"},
		{"DCS", "a\x1bPq#0;2;0;0;0\x1b\\b", "ab", "ab"},
		{"APC PM SOS", "a\x1b_x\x1b\\b\x1b^y\x1b\\c\x1bXz\x1b\\d", "abcd", "abcd"},
		{"two-byte escape", "a\x1bcb\x1b7c", "abc", "abc"},
		{"charset escape", "a\x1b(0b", "ab", "ab"},
		{"unterminated OSC eats the rest", "a\x1b]0;title", "a", "a"},
		{"CAN cancels a sequence", "a\x1b[12\x18b", "ab", "ab"},
		{"ESC at end", "a\x1b", "a", "a"},
		{"C0 and DEL", "a\x00\x07\x08\x7fb", "ab", "ab"},
		{"bidi override", "evil\u202egnp.exe", "evilgnp.exe", "evilgnp.exe"},
		{"bidi isolates", "a\u2066b\u2069c\u200fd", "abcd", "abcd"},
		{"zero width", "a\u200bb\ufeffc", "abc", "abc"},
		{"invalid UTF-8", "a\xffb\xc3", "a\uFFFDb\uFFFD", "a\uFFFDb\uFFFD"},
		{"U+FFFD kept", "a\uFFFDb", "a\uFFFDb", "a\uFFFDb"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := Text(tt.in); got != tt.text {
				t.Errorf("Text(%q) = %q, want %q", tt.in, got, tt.text)
			}
			if got := Line(tt.in); got != tt.line {
				t.Errorf("Line(%q) = %q, want %q", tt.in, got, tt.line)
			}
		})
	}
}

func TestSGRWriter(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"git colour kept", "\x1b[1mdiff --git\x1b[m\n\x1b[32m+ok\x1b[m\n", "\x1b[1mdiff --git\x1b[m\n\x1b[32m+ok\x1b[m\n"},
		{"256 and truecolour", "\x1b[38;5;196mx\x1b[38:2::1:2:3my", "\x1b[38;5;196mx\x1b[38:2::1:2:3my"},
		{"OSC 52 dropped", "+\x1b]52;c;Y3VybCBldmlsfHNo\x07\n", "+\n"},
		{"title dropped", "+\x1b]0;pwned\x07x", "+x"},
		{"erase dropped", "+\x1b[2Kx\x1b[1;1Hy", "+xy"},
		{"private mode dropped", "\x1b[?25lx", "x"},
		{"C1 CSI even as SGR", "\u009b31mx", "x"},
		{"SGR with intermediate", "\x1b[1 mx", "x"},
		{"too long SGR", "\x1b[" + strings.Repeat("1;", 40) + "mx", "x"},
		{"CR dropped", "a\r\n", "a\n"},
		{"bidi dropped", "a\u202eb", "ab"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// Whole, and one byte per write: sequences split anywhere.
			for _, chunk := range []int{len(tt.in) + 1, 1, 2, 3} {
				var buf bytes.Buffer
				w := NewSGRWriter(&buf)
				for p := []byte(tt.in); len(p) > 0; {
					n := min(chunk, len(p))
					if k, err := w.Write(p[:n]); err != nil || k != n {
						t.Fatalf("Write = %d, %v", k, err)
					}
					p = p[n:]
				}
				if err := w.Flush(); err != nil {
					t.Fatal(err)
				}
				if buf.String() != tt.want {
					t.Errorf("chunks of %d: %q -> %q, want %q", chunk, tt.in, buf.String(), tt.want)
				}
			}
		})
	}
}

// checkSafe is the sanitiser's promise: valid UTF-8, and no escape, C0 (but
// newline and tab where allowed), DEL, C1 or invisible formatting character.
// With sgr, ESC may start only a well-formed SGR sequence.
func checkSafe(t *testing.T, in, out string, keepNL, sgr bool) {
	t.Helper()
	if !utf8.ValidString(out) {
		t.Fatalf("%q -> %q: invalid UTF-8", in, out)
	}
	for i := 0; i < len(out); {
		r, n := utf8.DecodeRuneInString(out[i:])
		switch {
		case r == 0x1b && sgr:
			end := strings.IndexByte(out[i:], 'm')
			if end < 0 || strings.Trim(out[i+2:i+end], "0123456789;:") != "" || out[i+1] != '[' {
				t.Fatalf("%q -> %q: escape other than SGR at %d", in, out, i)
			}
			n = end + 1
		case (r == '\n' || r == '\t') && keepNL:
		case r < 0x20, r == 0x7f, r >= 0x80 && r <= 0x9f, invisible(r):
			t.Fatalf("%q -> %q: control %U at %d", in, out, r, i)
		}
		i += n
	}
}

func FuzzSanitize(f *testing.F) {
	for _, s := range []string{
		"plain", "\x1b]52;c;eA==\x07", "\x1b]0;pwned\x1b\\", "\x1b[2K", "\u009b2K", "\u009d0;x\u009c",
		"\x1b[31mred\x1b[m", "a\u202eb\u2066c", "\xff\xfe", "\x1bP1$r\x1b\\", "\x1b[?1049h", "\x1b(B", "\r\n\t",
	} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, s string, chunk int) {
		for _, keepNL := range []bool{false, true} {
			out := sanitize(s, keepNL)
			checkSafe(t, s, out, keepNL, false)
			if again := sanitize(out, keepNL); again != out {
				t.Fatalf("not idempotent: %q -> %q -> %q", s, out, again)
			}
		}
		var buf bytes.Buffer
		w := NewSGRWriter(&buf)
		if chunk < 1 {
			chunk = 1
		}
		for p := []byte(s); len(p) > 0; {
			n := min(chunk, len(p))
			w.Write(p[:n])
			p = p[n:]
		}
		w.Flush()
		checkSafe(t, s, buf.String(), true, true)
		// Without escapes, the writer is Text.
		if !strings.ContainsAny(s, "\x1b") && buf.String() != Text(s) {
			t.Fatalf("SGRWriter(%q) = %q, Text = %q", s, buf.String(), Text(s))
		}
	})
}
