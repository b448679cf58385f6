package forge

import (
	"strings"
	"unicode/utf8"

	"github.com/airlock-dev/airlock/internal/untrusted"
)

// maxBlock bounds the agent's text in a pull request body, below GitHub's
// 65,536 characters with room for the rest.
const maxBlock = 60000

// InertBlock makes text the agent wrote safe to put in a pull request body:
// control characters, escape sequences and invisible formatting characters
// are removed (untrusted.Text), and the rest is fenced as a code block, so
// that GitHub renders none of it as Markdown or HTML: no mentions that
// notify people, no images that call a server, no links, no closing
// keywords ("fixes #1"). The fence is longer than any run of backticks in
// the text, so the text cannot close it.
func InertBlock(text string) string {
	text = strings.TrimSpace(untrusted.Text(text))
	if len(text) > maxBlock {
		cut := maxBlock
		for cut > 0 && !utf8.RuneStart(text[cut]) {
			cut--
		}
		text = text[:cut] + "\n[… cut by airlock]"
	}
	fence := strings.Repeat("`", max(3, longestRun(text, '`')+1))
	return fence + "text\n" + text + "\n" + fence
}

func longestRun(s string, c byte) int {
	best, n := 0, 0
	for i := 0; i < len(s); i++ {
		if s[i] == c {
			n++
			best = max(best, n)
		} else {
			n = 0
		}
	}
	return best
}

// Title makes a one-line pull request title of s: its first non-empty
// line, without control characters, at most 200 characters.
func Title(s string) string {
	for _, l := range strings.Split(s, "\n") {
		l = strings.TrimSpace(untrusted.Line(l))
		l = strings.TrimSpace(strings.TrimLeft(l, "#"))
		if l == "" {
			continue
		}
		if utf8.RuneCountInString(l) > 200 {
			r := []rune(l)
			l = string(r[:199]) + "…"
		}
		return l
	}
	return ""
}
