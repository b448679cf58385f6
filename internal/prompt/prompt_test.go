package prompt

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"syscall"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		path string
		in   string
		want Prompt
	}{
		{
			name: "no frontmatter",
			path: "prompts/Fix Auth.md",
			in:   "Fix the login loop.\n",
			want: Prompt{Name: "fix-auth", Body: "Fix the login loop.", Lines: map[string]int{}},
		},
		{
			name: "all keys",
			path: "task.md",
			in: "---\nname: fix-auth\nbranch: release/1.2\nmodel: claude-sonnet-4-5\nmax_turns: 30\n" +
				"env:\n  - GITHUB_TOKEN\n  - LOG_LEVEL=debug\nimage: my/image:1\n---\n\n# Task\nDo it.\n",
			want: Prompt{
				Name: "fix-auth", Branch: "release/1.2", Model: "claude-sonnet-4-5", MaxTurns: 30,
				Env: []string{"GITHUB_TOKEN", "LOG_LEVEL=debug"}, Image: "my/image:1", Body: "# Task\nDo it.",
				Lines: map[string]int{"name": 2, "branch": 3, "model": 4, "max_turns": 5, "env": 6, "image": 9},
			},
		},
		{
			name: "CRLF and BOM",
			path: "x.md",
			in:   "\uFEFF---\r\nmodel: opus\r\n---\r\nline one\r\nline two\r\n",
			want: Prompt{Name: "x", Model: "opus", Body: "line one\nline two", Lines: map[string]int{"model": 2}},
		},
		{
			name: "empty frontmatter",
			path: "x.md",
			in:   "---\n# just a comment\n---\nbody",
			want: Prompt{Name: "x", Body: "body", Lines: map[string]int{}},
		},
		{
			name: "horizontal rule later in body is not frontmatter",
			path: "x.md",
			in:   "intro\n---\nmore\n",
			want: Prompt{Name: "x", Body: "intro\n---\nmore", Lines: map[string]int{}},
		},
		{
			name: "flow list env",
			path: "x.md",
			in:   "---\nenv: [A, B=1]\n---\nbody",
			want: Prompt{Name: "x", Env: []string{"A", "B=1"}, Body: "body", Lines: map[string]int{"env": 2}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(tt.path, []byte(tt.in))
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			tt.want.Path = tt.path
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("Parse =\n%+v\nwant\n%+v", *got, tt.want)
			}
		})
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want string // the error must start with this, then contain wantAlso
		also string
	}{
		{"unknown key", "---\nmodel: x\nturns: 3\n---\nbody", "p.md:3: ", `unknown key "turns"; known keys: name, branch`},
		{"max_turns zero", "---\nmax_turns: 0\n---\nbody", "p.md:2: ", "max_turns must be at least 1"},
		{"max_turns negative", "---\nmax_turns: -4\n---\nbody", "p.md:2: ", "at least 1"},
		{"max_turns text", "---\nmax_turns: many\n---\nbody", "p.md:2: ", `max_turns must be a whole number, got "many"`},
		{"max_turns float", "---\nmax_turns: 1.5\n---\nbody", "p.md:2: ", "whole number"},
		{"model number", "---\nmodel: 4\n---\nbody", "p.md:2: ", `model must be text, got int 4 (quote it: "4")`},
		{"model empty", "---\nmodel:\n---\nbody", "p.md:2: ", "model must be text, got nothing"},
		{"name list", "---\nname: [a]\n---\nbody", "p.md:2: ", "name must be text, got a list"},
		{"bad name", "---\n\nname: Fix_Auth\n---\nbody", "p.md:3: ", `invalid run name "Fix_Auth"; a run name is 1-40 lower-case`},
		{"bad env entry", "---\nenv:\n  - OK=1\n  - 1BAD\n---\nbody", "p.md:4: ", `invalid environment entry "1BAD"`},
		{"env not list", "---\nenv: A=1\n---\nbody", "p.md:2: ", "env must be a list"},
		{"env entry mapping", "---\nenv:\n  - A: 1\n---\nbody", "p.md:3: ", "env entry must be text, got a mapping"},
		{"bad branch", "---\nbranch: -x\n---\nbody", "p.md:2: ", "not a valid git branch name"},
		{"duplicate key", "---\nmodel: a\nmodel: b\n---\nbody", "p.md:3: ", "model is set twice (first on line 2)"},
		{"not a mapping", "---\n- a\n---\nbody", "p.md:2: ", "frontmatter must be key: value settings"},
		{"yaml syntax", "---\nmodel: a\nenv: [A,\n---\nbody", "p.md:", "invalid frontmatter"},
		{"unterminated", "---\nmodel: a\nbody text\n", "p.md:1: ", "never closed"},
		{"empty body", "---\nmodel: a\n---\n\n  \n", "p.md:4: ", "the prompt is empty"},
		{"empty file", "", "p.md:1: ", "the prompt is empty"},
		{"alias", "---\nmodel: &m x\nimage: *m\n---\nbody", "p.md:3: ", "image must be text, got an alias"},
		{"NUL byte", "Fix it.\nnow\x00please", "p.md:2: ", "NUL byte at byte offset 11: this is a binary file"},
		{"binary (ELF)", "\x7fELF\x02\x01\x01\x00\x00", "p.md:1: ", "NUL byte at byte offset 7"},
		{"invalid UTF-8", "---\nmodel: a\n---\ncaf\xe9 au lait", "p.md:4: ", "invalid UTF-8 at byte offset 20 (0xe9)"},
		{"truncated UTF-8", "ends mid-rune \xe2\x82", "p.md:1: ", "invalid UTF-8 at byte offset 14"},
		{"UTF-16", "\xff\xfeF\x00i\x00x\x00", "p.md:1: ", "NUL byte"},
		{"whitespace only", " \t\n\r\n  \n", "p.md:1: ", "the prompt is empty"},
		{"too large", strings.Repeat("a", MaxBytes+1), "p.md: ", "the prompt is 1.0 MiB, more than the 1.0 MiB a prompt may be"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := Parse("p.md", []byte(tt.in))
			if err == nil {
				t.Fatal("Parse succeeded, want an error")
			}
			if !strings.HasPrefix(err.Error(), tt.want) || !strings.Contains(err.Error(), tt.also) {
				t.Errorf("error = %q\nwant prefix %q containing %q", err, tt.want, tt.also)
			}
		})
	}
}

func TestLoad(t *testing.T) {
	path := filepath.Join(t.TempDir(), "refactor-db.md")
	if err := os.WriteFile(path, []byte("Refactor the db layer."), 0o644); err != nil {
		t.Fatal(err)
	}
	p, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if p.Name != "refactor-db" || p.Body != "Refactor the db layer." || p.Path != path {
		t.Errorf("Load = %+v", p)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.md")); err == nil || !strings.Contains(err.Error(), "missing.md") {
		t.Errorf("Load(missing) error = %v, want one naming the file", err)
	}
}

// Load refuses what is not a prompt before reading it whole: a huge file
// is read only up to the cap, a FIFO not at all.
func TestLoadRefusesNonPrompts(t *testing.T) {
	dir := t.TempDir()
	huge := filepath.Join(dir, "huge.md")
	f, err := os.Create(huge)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(64 << 20); err != nil { // 64 MiB, sparse
		t.Fatal(err)
	}
	f.Close()
	fifo := filepath.Join(dir, "pipe.md")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "logo.md")
	if err := os.WriteFile(bin, []byte("\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR"), 0o644); err != nil {
		t.Fatal(err)
	}
	tests := []struct{ path, want string }{
		{huge, huge + ": the prompt is 64.0 MiB, more than the 1.0 MiB a prompt may be"},
		{fifo, fifo + ": not a regular file"},
		{bin, bin + ":3: NUL byte at byte offset 8"},
		{dir, dir + ": not a regular file"},
	}
	for _, tt := range tests {
		t.Run(filepath.Base(tt.path), func(t *testing.T) {
			_, err := Load(tt.path)
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Load error = %v, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestInline(t *testing.T) {
	tests := []struct {
		name, text, want string
	}{
		{"ok", "  Add a --verbose flag  ", ""},
		{"empty", "", "-m: the prompt is empty"},
		{"whitespace", " \t\n ", "-m: the prompt is empty (only white space)"},
		{"NUL", "a\x00b", "-m:1: NUL byte at byte offset 1"},
		{"not UTF-8", "line\n\xff", "-m:2: invalid UTF-8 at byte offset 5 (0xff)"},
		{"too large", strings.Repeat("x", MaxBytes+1), "-m: the prompt is 1.0 MiB, more than"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := Inline(tt.text, "n")
			if tt.want == "" {
				if err != nil || p.Body != tt.text || p.Name != "n" {
					t.Fatalf("Inline = %+v, %v", p, err)
				}
				return
			}
			if err == nil || !strings.HasPrefix(err.Error(), tt.want) {
				t.Fatalf("Inline error = %v, want prefix %q", err, tt.want)
			}
		})
	}
}

func TestValidateName(t *testing.T) {
	valid := []string{"a", "fix-auth", "0day", "a1-b2-c3", strings.Repeat("x", 40)}
	invalid := []string{"", "-a", "a-", "a--b", "Fix", "fix_auth", "fix.auth", "fix auth", "ü", strings.Repeat("x", 41), "a/b"}
	for _, n := range valid {
		if err := ValidateName(n); err != nil {
			t.Errorf("ValidateName(%q) = %v, want nil", n, err)
		}
	}
	for _, n := range invalid {
		err := ValidateName(n)
		if err == nil {
			t.Errorf("ValidateName(%q) = nil, want an error", n)
		} else if !strings.Contains(err.Error(), "lower-case letters, digits and single hyphens") {
			t.Errorf("ValidateName(%q) = %q, want it to explain the rule", n, err)
		}
	}
}

func TestNameFromPath(t *testing.T) {
	tests := map[string]string{
		"fix-auth.md":                  "fix-auth",
		"/abs/dir/Fix Auth.md":         "fix-auth",
		"prompts/__add  tests__.md":    "add-tests",
		"release.v2.prompt.md":         "release-v2-prompt",
		"Ünïcode.md":                   "n-code",
		"日本.md":                        "run",
		".md":                          "run",
		"":                             "run",
		strings.Repeat("ab-", 30) + "": strings.TrimRight(strings.Repeat("ab-", 30)[:40], "-"),
	}
	for in, want := range tests {
		got := NameFromPath(in)
		if got != want {
			t.Errorf("NameFromPath(%q) = %q, want %q", in, got, want)
		}
		if err := ValidateName(got); err != nil {
			t.Errorf("NameFromPath(%q) = %q, which is invalid: %v", in, got, err)
		}
	}
}

func FuzzParse(f *testing.F) {
	seeds := []string{
		"Fix it.",
		"---\nname: fix-auth\nmax_turns: 3\nenv: [A, B=c]\n---\nbody",
		"\uFEFF---\r\nmodel: x\r\n---\r\nbody\r\n",
		"---\n---\n",
		"---\nname: [\n---\nx",
		"---\nmax_turns: 0x10\n---\nx",
		"---\na: &a [*a]\n---\nx",
	}
	for _, s := range seeds {
		f.Add("p.md", []byte(s))
	}
	f.Fuzz(func(t *testing.T, path string, data []byte) {
		p, err := Parse(path, data)
		if err != nil {
			return
		}
		if err := ValidateName(p.Name); err != nil {
			t.Fatalf("accepted prompt has invalid name: %v", err)
		}
		if strings.TrimSpace(p.Body) == "" {
			t.Fatal("accepted prompt has an empty body")
		}
		if p.MaxTurns < 0 {
			t.Fatalf("accepted max_turns %d", p.MaxTurns)
		}
		for _, e := range p.Env {
			if err := ValidateEnvEntry(e); err != nil {
				t.Fatalf("accepted env entry: %v", err)
			}
		}
	})
}
