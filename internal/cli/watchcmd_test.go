package cli

import (
	"testing"

	"github.com/airlock-dev/airlock/internal/run"
)

// A commit shows as its short id and subject, then its stat; what the
// agent wrote goes to the terminal without its escapes.
func TestCommitText(t *testing.T) {
	sha := "0123456789abcdef0123456789abcdef01234567"
	tests := []struct {
		name string
		c    run.Commit
		want string
	}{
		{"plain", run.Commit{SHA: sha, Subject: "Add x", Stat: " x | 1 +\n 1 file changed, 1 insertion(+)"},
			"0123456 Add x\n x | 1 +\n 1 file changed, 1 insertion(+)\n\n"},
		{"no stat", run.Commit{SHA: sha, Subject: "Empty"}, "0123456 Empty\n\n"},
		{"hostile subject", run.Commit{SHA: sha, Subject: "a\x1b]0;title\x07b\x1b[2Jc\u202ed\ne\u009b31mf"},
			"0123456 abcd ef\n\n"},
		{"hostile stat", run.Commit{SHA: sha, Subject: "s", Stat: " \x1b[31mx\x1b[0m | 1 +\x07"},
			"0123456 s\n x | 1 +\n\n"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := commitText(tt.c); got != tt.want {
				t.Errorf("commitText = %q, want %q", got, tt.want)
			}
		})
	}
}
