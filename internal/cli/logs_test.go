package cli

import (
	"slices"
	"strings"
	"testing"

	"github.com/airlock-dev/airlock/internal/transcript"
)

// eachLine reads the agent's transcript: every line once, whatever the
// agent did to its end or its lengths.
func TestEachLine(t *testing.T) {
	long := strings.Repeat("x", transcript.MaxLine+1)
	tests := []struct {
		name  string
		in    string
		lines []string
		long  int
	}{
		{"lines", "a\nb\n", []string{"a", "b"}, 0},
		{"no newline at the end", "a\nb", []string{"a", "b"}, 0},
		{"blank lines", "\n\na\n\n", []string{"a"}, 0},
		{"carriage returns kept", "a\r\nb", []string{"a\r", "b"}, 0},
		{"a line too long is skipped and counted", "a\n" + long + "\nb\n", []string{"a", "b"}, 1},
		{"too long at the end without newline", "a\n" + long, []string{"a"}, 1},
		{"invalid UTF-8 and escapes pass as bytes", "\xff\x1b[2J\n", []string{"\xff\x1b[2J"}, 0},
		{"empty", "", nil, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var got []string
			n, err := eachLine(strings.NewReader(tt.in), func(l []byte) error {
				got = append(got, string(l))
				return nil
			})
			if err != nil {
				t.Fatal(err)
			}
			if !slices.Equal(got, tt.lines) || n != tt.long {
				t.Errorf("eachLine = %q, %d long; want %q, %d", got, n, tt.lines, tt.long)
			}
		})
	}
}
