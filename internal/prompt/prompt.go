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
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"gopkg.in/yaml.v3"

	"github.com/airlock-dev/airlock/internal/egress"
)

// Prompt is a parsed prompt file.
type Prompt struct {
	Path string // as given to Parse or Load; used in messages and provenance

	Name     string   // run name: frontmatter "name", else derived from Path
	Branch   string   // "branch": base branch to start from; empty = current HEAD
	Model    string   // "model": passed to the agent as --model
	MaxTurns int      // "max_turns": > 0 when set, 0 when absent
	Env      []string // "env": NAME or NAME=value, validated but not resolved
	Allow    []string // "allow": egress host patterns added for this run
	Image    string   // "image": image to run instead of the configured one

	Body string // the Markdown after the frontmatter, trimmed

	// Lines maps each frontmatter key present in the file to its line, so
	// callers can say where a setting came from.
	Lines map[string]int
}

var utf8BOM = []byte{0xEF, 0xBB, 0xBF}

// frontmatterKeys lists the keys accepted in frontmatter, in the order the
// error message names them.
var frontmatterKeys = []string{"name", "branch", "model", "max_turns", "env", "image", "allow"}

// Keys returns the keys accepted in frontmatter, for help and docs.
func Keys() []string { return slices.Clone(frontmatterKeys) }

// Load reads and parses the prompt file at path.
func Load(path string) (*Prompt, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read prompt: %w", err)
	}
	return Parse(path, data)
}

// Parse parses a prompt file's contents. path is used for the default run
// name and in errors, which have the form "path:line: problem".
func Parse(path string, data []byte) (*Prompt, error) {
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
