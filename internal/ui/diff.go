package ui

import (
	"strconv"
	"strings"
)

// ParseDiff splits `git diff` output into files. The names and contents
// are the agent's: raw, for the page to show as text. Lines outside any
// file's part (airlock's own "# Uncommitted changes" header) are dropped.
func ParseDiff(patch string) []FileDiff {
	var files []FileDiff
	var cur *FileDiff
	var b strings.Builder
	flush := func() {
		if cur != nil {
			cur.Patch = b.String()
			files = append(files, *cur)
		}
		cur = nil
		b.Reset()
	}
	inHunk := false
	for line := range strings.SplitAfterSeq(patch, "\n") {
		text := strings.TrimSuffix(line, "\n")
		if strings.HasPrefix(text, "diff --git ") {
			flush()
			cur = &FileDiff{Status: "M"}
			cur.OldPath, cur.Path = gitPaths(strings.TrimPrefix(text, "diff --git "))
			inHunk = false
			b.WriteString(line)
			continue
		}
		if cur == nil {
			continue
		}
		if !inHunk && strings.HasPrefix(text, "# ") {
			continue // airlock's header between the committed and uncommitted parts
		}
		switch {
		case strings.HasPrefix(text, "@@"):
			inHunk = true
		case inHunk && strings.HasPrefix(text, "+"):
			cur.Additions++
		case inHunk && strings.HasPrefix(text, "-"):
			cur.Deletions++
		case inHunk && (strings.HasPrefix(text, " ") || strings.HasPrefix(text, "\\") || text == ""):
		case inHunk:
			// Something after the last hunk that is no diff line: the
			// blank line and header before the uncommitted part.
			if strings.HasPrefix(text, "# ") {
				continue
			}
		case strings.HasPrefix(text, "new file mode"):
			cur.Status = "A"
		case strings.HasPrefix(text, "deleted file mode"):
			cur.Status = "D"
		case strings.HasPrefix(text, "rename from "):
			cur.Status, cur.OldPath = "R", unquote(strings.TrimPrefix(text, "rename from "))
		case strings.HasPrefix(text, "rename to "):
			cur.Status, cur.Path = "R", unquote(strings.TrimPrefix(text, "rename to "))
		case strings.HasPrefix(text, "Binary files ") || text == "GIT binary patch":
			cur.Binary = true
		case strings.HasPrefix(text, "--- "):
			if p := diffPath(strings.TrimPrefix(text, "--- "), "a/"); p != "" {
				cur.OldPath = p
			}
		case strings.HasPrefix(text, "+++ "):
			if p := diffPath(strings.TrimPrefix(text, "+++ "), "b/"); p != "" {
				cur.Path = p
			}
		}
		b.WriteString(line)
	}
	flush()
	for i := range files {
		f := &files[i]
		if f.Status == "D" && f.Path == "" {
			f.Path = f.OldPath
		}
		if f.Status != "R" {
			f.OldPath = ""
		}
		f.Patch = strings.TrimRight(f.Patch, "\n") + "\n"
	}
	return files
}

// gitPaths reads "a/X b/Y" of a diff --git line. Unquoted names with
// spaces are ambiguous; the ---/+++ or rename lines settle them later.
func gitPaths(s string) (oldPath, newPath string) {
	if strings.HasPrefix(s, `"`) {
		if end := quotedEnd(s); end > 0 {
			oldPath = strings.TrimPrefix(unquote(s[:end]), "a/")
			newPath = strings.TrimPrefix(unquote(strings.TrimSpace(s[end:])), "b/")
			return oldPath, newPath
		}
	}
	if i := strings.Index(s, " b/"); i >= 0 {
		return strings.TrimPrefix(s[:i], "a/"), unquote(s[i+3:])
	}
	return s, s
}

func quotedEnd(s string) int {
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return -1
}

func diffPath(s, prefix string) string {
	if s == "/dev/null" {
		return ""
	}
	return strings.TrimPrefix(unquote(s), prefix)
}

// unquote undoes git's C-style quoting of unusual file names.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		if u, err := strconv.Unquote(s); err == nil {
			return u
		}
	}
	return s
}
