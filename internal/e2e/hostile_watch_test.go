package e2e

import (
	"strings"
	"testing"
	"time"

	"github.com/airlock-dev/airlock/internal/testkit"
)

// The hostile-sandbox suite, watch part: `airlock watch` shows what the
// agent wrote into its commits (subjects, file names in the stat) on the
// user's terminal, and reads them with git in the sandbox while the run
// runs.

// hostileSubject carries an OSC title change, a screen clear, colour, a
// right-to-left override, markup, an OSC 8 hyperlink and a bell.
const hostileSubject = `Hostile \033]0;pwned-title\007\033[2J\033[31mred\033[0m \342\200\256txt.exe <img src=x onerror=alert(1)> \033]8;;http://evil.example/\033\\link\033]8;;\033\\ bell\007 end`

// A commit subject and a file name carrying escape sequences show inert in
// watch's output, and a commit with a subject of megabytes (zero-width
// characters, which git's own truncation lets through: 48 MB) under them does not
// hang watch or fill its memory: git's output is capped, and the commits
// made after it still show.
func TestHostileWatchCommitSubjects(t *testing.T) {
	onEngines(t, []engineKind{onDocker}, hostileWatchCommitSubjects)
}

func hostileWatchCommitSubjects(t *testing.T, e *env) {
	script := `set -e
git config core.quotePath false
head -c 16000000 /dev/zero | sed 's/\x0/\xe2\x80\x8b/g' > /tmp/flood.msg
printf 'x' >> /tmp/flood.msg
git commit -q --allow-empty --cleanup=verbatim -F /tmp/flood.msg
rm /tmp/flood.msg
f="$(printf 'evil\033[31m\033]0;file-title\007.txt')"
echo evil > "$f" && git add -- "$f"
git commit -q -m "$(printf '` + hostileSubject + `')"
git commit -q --allow-empty -m 'After the flood'
` + waitForFile("/tmp/go")
	e.server(testkit.Script{
		Name:      "hostile-watch",
		Steps:     []testkit.Step{{Text: "Committing.", Tool: "Bash", Input: bash(script)}},
		FinalText: "Committed.",
	})
	id := strings.TrimSpace(e.ok("run", "-d", "-m", "Commit hostile things.", "--name", "hostile-watch").stdout)
	w := startWatch(t, e, id)
	w.waitFor("After the flood\n")
	// A few more listings of the flood, as the run goes on.
	time.Sleep(3 * time.Second)
	rss := w.peakRSS()
	e.ok("exec", id, "--", "touch", "/tmp/go")
	if code := w.wait(); code != 0 {
		_, errOut := w.output()
		t.Fatalf("watch exited %d\n%s", code, errOut)
	}
	out, errOut := w.output()
	t.Logf("watch printed (peak RSS while the run ran %d KiB):\n%s\n%s", rss>>10, out, errOut)

	for _, bad := range []string{"\x1b", "\a", "\u202e", "\u200b", "\x9b", "pwned-title", "evil.example"} {
		if strings.Contains(out, bad) || strings.Contains(errOut, bad) {
			t.Errorf("watch's output holds %q\nstdout: %q\nstderr: %q", bad, out, errOut)
		}
	}
	// Inert, and still there to read: the text around the escapes. (Git
	// quotes a file name with control characters, core.quotePath or not.)
	for _, want := range []string{"Hostile ", "red", "txt.exe <img src=x onerror=alert(1)>", "link", "end\n", "evil"} {
		if !strings.Contains(out, want) {
			t.Errorf("watch's output lacks %q:\n%q", want, out)
		}
	}
	// Git's output is capped, well under the 48 MB the subject holds.
	if rss > 100<<20 {
		t.Errorf("watch's peak resident memory while the run ran was %d MiB", rss>>20)
	}
	if len(out) > 64<<10 {
		t.Errorf("watch printed %d bytes for three commits", len(out))
	}
	if !strings.Contains(errOut, "Run "+id+" succeeded") {
		t.Errorf("no outcome:\n%s", errOut)
	}
}
