// Package prompt reads prompt files: the task for an agent, written as
// Markdown, with optional YAML frontmatter that names the run and overrides
// a few settings for it.
//
//	---
//	name: fix-auth
//	max_turns: 30
//	env: [GITHUB_TOKEN, LOG_LEVEL=debug]
//	---
//	Fix the login redirect loop described in issue 12.
package prompt

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"unicode/utf8"

	"gopkg.in/yaml.v3"

	"github.com/airlock-dev/airlock/internal/egress"
)

// Prompt is a parsed prompt file.
type Prompt struct {
	Path string // as given to Parse or Load; used in messages and provenance

	Name     string   // run name: frontmatter "name", else derived from Path
	Branch   string   // "branch": base branch to start from; empty = current HEAD
	Agent    string   // "agent": the agent to run (checked against the agents by the caller)
	Model    string   // "model": passed to the agent as --model
	MaxTurns int      // "max_turns": > 0 when set, 0 when absent
	Env      []string // "env": NAME or NAME=value, validated but not resolved
	Allow    []string // "allow": egress host patterns added for this run
	Image    string   // "image": image to run instead of the configured one
	Setup    []string // "setup": shell commands run in the sandbox before the agent

	Body string // the Markdown after the frontmatter, trimmed

	// Lines maps each frontmatter key present in the file to its line, so
	// callers can say where a setting came from.
	Lines map[string]int
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// frontmatterKeys lists the keys accepted in frontmatter, in the order the
// error message names them.
var frontmatterKeys = []string{"name", "branch", "agent", "model", "max_turns", "env", "image", "allow", "setup"}

// Keys returns the keys accepted in frontmatter, for help and docs.
func Keys() []string { return slices.Clone(frontmatterKeys) }

// MaxBytes caps a prompt: the file with its frontmatter, or the text of
// -m. A task is a page or two of Markdown; Claude Code itself refuses
// prompts past 10 MB, and a file this large is a mistake (a log, a binary)
// better caught before a run is created than by the agent after it starts.
const MaxBytes = 1 << 20

// Load reads and parses the prompt file at path. Only a regular file is
// read (opened without blocking, so a FIFO is refused rather than waited
// on), and never more than MaxBytes of it.
func Load(path string) (*Prompt, error) {
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read prompt: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read prompt: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("%s: not a regular file (%s); a prompt is a Markdown file", path, fi.Mode().Type())
	}
	data, err := io.ReadAll(io.LimitReader(f, MaxBytes+1))
	if err != nil {
		return nil, fmt.Errorf("read prompt %s: %w", path, err)
	}
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("%s: %w", path, tooLarge(max(fi.Size(), int64(len(data)))))
	}
	return Parse(path, data)
}

// Inline makes a prompt of the text given with -m. name may be empty;
// callers name the run.
func Inline(text, name string) (*Prompt, error) {
	if len(text) > MaxBytes {
		return nil, fmt.Errorf("-m: %w", tooLarge(int64(len(text))))
	}
	if err := checkText("-m", []byte(text)); err != nil {
		return nil, err
	}
	if strings.TrimSpace(text) == "" {
		return nil, errors.New("-m: the prompt is empty (only white space); write the task for the agent")
	}
	return &Prompt{Name: name, Body: text}, nil
}

func tooLarge(size int64) error {
	return fmt.Errorf("the prompt is %s, more than the %s a prompt may be; put large material in the repository and point the agent at it",
		humanBytes(size), humanBytes(MaxBytes))
}

func humanBytes(n int64) string {
	switch {
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	case n >= 1<<10:
		return fmt.Sprintf("%.1f KiB", float64(n)/(1<<10))
	}
	return fmt.Sprintf("%d bytes", n)
}

// checkText refuses what is not text: a NUL byte (a binary file) or bytes
// that are not UTF-8. The error names the line and the byte offset, so the
// culprit can be found with any editor or `xxd -s`.
func checkText(where string, data []byte) error {
	if i := bytes.IndexByte(data, 0); i >= 0 {
		return fmt.Errorf("%s:%d: NUL byte at byte offset %d: this is a binary file, not a prompt (Markdown text)", where, lineAt(data, i), i)
	}
	for i := 0; i < len(data); {
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return fmt.Errorf("%s:%d: invalid UTF-8 at byte offset %d (0x%02x): save the prompt as UTF-8 text", where, lineAt(data, i), i, data[i])
		}
		i += size
	}
	return nil
}

// lineAt is the 1-based line of byte offset i.
func lineAt(data []byte, i int) int {
	return bytes.Count(data[:i], []byte("\n")) + 1
}

// Parse parses a prompt file's contents. path is used for the default run
// name and in errors, which have the form "path:line: problem".
func Parse(path string, data []byte) (*Prompt, error) {
	if len(data) > MaxBytes {
		return nil, fmt.Errorf("%s: %w", path, tooLarge(int64(len(data))))
	}
	if err := checkText(path, data); err != nil {
		return nil, err
	}
	text := string(bytes.TrimPrefix(data, utf8BOM))
	text = strings.ReplaceAll(text, "\r\n", "\n")
	lines := strings.SplitAfter(text, "\n")

	p := &Prompt{Path: path, Lines: map[string]int{}}
	bodyStart := 0 // index into lines where the body starts
	if len(lines) > 0 && isFence(lines[0]) {
		end := -1
		for i := 1; i < len(lines); i++ {
			if isFence(lines[i]) {
				end = i
				break
			}
		}
		if end < 0 {
			return nil, fmt.Errorf("%s:1: frontmatter opened with --- is never closed; add a line containing only --- after the settings", path)
		}
		if err := p.parseFrontmatter(strings.Join(lines[1:end], "")); err != nil {
			return nil, err
		}
		bodyStart = end + 1
	}
	if p.Name == "" {
		p.Name = NameFromPath(path)
	}

	body := strings.Join(lines[bodyStart:], "")
	p.Body = strings.TrimSpace(body)
	if p.Body == "" {
		return nil, fmt.Errorf("%s:%d: the prompt is empty; write the task for the agent after the frontmatter", path, bodyStart+1)
	}
	return p, nil
}

func isFence(line string) bool {
	return strings.TrimRight(line, " \t\n") == "---"
}

// yamlLineErr matches the position yaml.v3 puts in its syntax errors.
var yamlLineErr = regexp.MustCompile(`^yaml: line (\d+): (.*)$`)

// parseFrontmatter reads the YAML between the fences. Its first line is line
// 2 of the file, after the opening ---.
func (p *Prompt) parseFrontmatter(src string) error {
	const offset = 1
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		line, msg := 1, strings.TrimPrefix(err.Error(), "yaml: ")
		if m := yamlLineErr.FindStringSubmatch(err.Error()); m != nil {
			n, _ := strconv.Atoi(m[1])
			line, msg = n+offset, m[2]
		}
		return fmt.Errorf("%s:%d: invalid frontmatter: %s", p.Path, line, msg)
	}
	if len(doc.Content) == 0 {
		return nil // only comments or blank lines
	}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return fmt.Errorf("%s:%d: frontmatter must be key: value settings (%s)", p.Path, root.Line+offset, keyList())
	}
	for i := 0; i+1 < len(root.Content); i += 2 {
		k, v := root.Content[i], root.Content[i+1]
		line := k.Line + offset
		where := func(n *yaml.Node) string { return fmt.Sprintf("%s:%d", p.Path, n.Line+offset) }
		if k.Kind != yaml.ScalarNode {
			return fmt.Errorf("%s: frontmatter keys must be plain words (%s)", where(k), keyList())
		}
		if prev, dup := p.Lines[k.Value]; dup {
			return fmt.Errorf("%s: %s is set twice (first on line %d); keep one", where(k), k.Value, prev)
		}
		if err := p.setKey(k.Value, v); err != nil {
			var ne *nodeError
			if errors.As(err, &ne) {
				return fmt.Errorf("%s: %w", where(ne.node), ne.err)
			}
			return fmt.Errorf("%s: %w", where(v), err)
		}
		p.Lines[k.Value] = line
	}
	return nil
}

func keyList() string {
	return "known keys: " + strings.Join(frontmatterKeys, ", ")
}

func (p *Prompt) setKey(key string, v *yaml.Node) error {
	switch key {
	case "name":
		s, err := stringValue(key, v)
		if err != nil {
			return err
		}
		if err := ValidateName(s); err != nil {
			return fmt.Errorf("name: %w", err)
		}
		p.Name = s
	case "branch":
		s, err := stringValue(key, v)
		if err != nil {
			return err
		}
		if err := validateBranch(s); err != nil {
			return err
		}
		p.Branch = s
	case "agent":
		s, err := stringValue(key, v)
		if err != nil {
			return err
		}
		if s == "" || strings.ContainsFunc(s, func(r rune) bool { return (r < 'a' || r > 'z') && (r < '0' || r > '9') && r != '-' }) {
			return fmt.Errorf("agent %q must be an agent's name, such as claude or codex", s)
		}
		p.Agent = s
	case "model":
		s, err := stringValue(key, v)
		if err != nil {
			return err
		}
		if strings.TrimSpace(s) != s || strings.ContainsAny(s, " \t\n\x00") {
			return fmt.Errorf("model %q must not contain spaces", s)
		}
		p.Model = s
	case "image":
		s, err := stringValue(key, v)
		if err != nil {
			return err
		}
		if strings.ContainsAny(s, " \t\n\x00") {
			return fmt.Errorf("image %q must not contain spaces", s)
		}
		p.Image = s
	case "max_turns":
		var n int
		if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!int" || v.Decode(&n) != nil {
			return fmt.Errorf("max_turns must be a whole number, got %s", describe(v))
		}
		if n <= 0 {
			return fmt.Errorf("max_turns must be at least 1, got %d; remove the key for no limit", n)
		}
		p.MaxTurns = n
	case "env":
		if v.Kind != yaml.SequenceNode {
			return fmt.Errorf("env must be a list such as [GITHUB_TOKEN, LOG_LEVEL=debug], got %s", describe(v))
		}
		env := make([]string, 0, len(v.Content))
		for _, item := range v.Content {
			s, err := stringValue("env entry", item)
			if err == nil {
				err = ValidateEnvEntry(s)
			}
			if err != nil {
				return &nodeError{item, err}
			}
			env = append(env, s)
		}
		p.Env = env
	case "allow":
		if v.Kind != yaml.SequenceNode {
			return fmt.Errorf("allow must be a list of host patterns such as [api.example.com, \"*.example.org\"], got %s", describe(v))
		}
		allow := make([]string, 0, len(v.Content))
		for _, item := range v.Content {
			s, err := stringValue("allow entry", item)
			if err == nil {
				_, err = egress.ParseRule(s, "")
			}
			if err != nil {
				return &nodeError{item, err}
			}
			allow = append(allow, s)
		}
		p.Allow = allow
	case "setup":
		if v.Kind != yaml.SequenceNode {
			return fmt.Errorf("setup must be a list of shell commands such as [\"npm ci\"], got %s", describe(v))
		}
		setup := make([]string, 0, len(v.Content))
		for _, item := range v.Content {
			s, err := stringValue("setup entry", item)
			if err == nil {
				err = ValidateSetupCommand(s)
			}
			if err != nil {
				return &nodeError{item, err}
			}
			setup = append(setup, s)
		}
		p.Setup = setup
	default:
		return fmt.Errorf("unknown key %q; %s", key, keyList())
	}
	return nil
}

// stringValue insists on a YAML string so that "name: 123" or "model: yes"
// are reported rather than silently turned into text.
func stringValue(key string, v *yaml.Node) (string, error) {
	if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!str" {
		hint := ""
		if v.Kind == yaml.ScalarNode && v.ShortTag() != "!!null" {
			hint = fmt.Sprintf(" (quote it: %q)", v.Value)
		}
		return "", fmt.Errorf("%s must be text, got %s%s", key, describe(v), hint)
	}
	if v.Value == "" {
		return "", fmt.Errorf("%s is empty; remove the key or give it a value", key)
	}
	return v.Value, nil
}

func describe(v *yaml.Node) string {
	switch v.Kind {
	case yaml.SequenceNode:
		return "a list"
	case yaml.MappingNode:
		return "a mapping"
	case yaml.AliasNode:
		return "an alias"
	}
	switch v.ShortTag() {
	case "!!null":
		return "nothing"
	case "!!str":
		return fmt.Sprintf("%q", v.Value)
	default:
		return fmt.Sprintf("%s %s", strings.TrimPrefix(v.ShortTag(), "!!"), v.Value)
	}
}

// nodeError points an error at a node other than the key's value, such as
// one entry of a list.
type nodeError struct {
	node *yaml.Node
	err  error
}

func (e *nodeError) Error() string { return e.err.Error() }

var errBadBranch = errors.New("not a valid git branch name")

// validateBranch applies the parts of git check-ref-format that matter for a
// name we later pass to git as an argument.
func validateBranch(b string) error {
	bad := strings.HasPrefix(b, "-") || strings.HasPrefix(b, "/") || strings.HasSuffix(b, "/") ||
		strings.HasSuffix(b, ".") || strings.HasSuffix(b, ".lock") || strings.Contains(b, "..") ||
		strings.Contains(b, "//") || strings.Contains(b, "@{") || b == "@" || strings.Contains(b, "/.") ||
		strings.HasPrefix(b, ".")
	for _, r := range b {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			bad = true
		}
	}
	if bad {
		return fmt.Errorf("branch %q: %w", b, errBadBranch)
	}
	return nil
}
