package config

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	toml "github.com/pelletier/go-toml/v2"

	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/pelletier/go-toml/v2/unstable"
)

// SystemPath is the machine-wide configuration file.
const SystemPath = "/etc/airlock/config.toml"

// Loader names the configuration files to layer, lowest first. An empty path
// is skipped, as is a file that does not exist; any other problem with a
// file is an error.
type Loader struct {
	SystemPath  string
	UserPath    string
	ProjectPath string
}

// DefaultPaths returns the standard locations: SystemPath, then
// $XDG_CONFIG_HOME/airlock/config.toml (default ~/.config), then
// <repoRoot>/.airlock/config.toml. getenv is usually os.Getenv; an empty
// repoRoot skips the project file.
func DefaultPaths(repoRoot string, getenv func(string) string) Loader {
	l := Loader{SystemPath: SystemPath}
	// The XDG spec says to ignore a relative XDG_CONFIG_HOME.
	if dir := getenv("XDG_CONFIG_HOME"); filepath.IsAbs(dir) {
		l.UserPath = filepath.Join(dir, "airlock", "config.toml")
	} else if home := getenv("HOME"); home != "" {
		l.UserPath = filepath.Join(home, ".config", "airlock", "config.toml")
	}
	if repoRoot != "" {
		l.ProjectPath = filepath.Join(repoRoot, ".airlock", "config.toml")
	}
	return l
}

// Load reads the files in order over the defaults.
func (l Loader) Load() (*Resolved, error) {
	r := newResolved()
	r.projectPath = l.ProjectPath
	for _, path := range []string{l.SystemPath, l.UserPath, l.ProjectPath} {
		if path == "" {
			continue
		}
		data, err := os.ReadFile(path)
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read config: %w", err)
		}
		if err := r.applyFile(path, data); err != nil {
			return nil, err
		}
	}
	if l.ProjectPath != "" {
		if err := r.loadProfileFiles(filepath.Dir(filepath.Dir(l.ProjectPath))); err != nil {
			return nil, err
		}
	}
	if err := r.checkWideCIDRs(); err != nil {
		return nil, err
	}
	return r, nil
}

// checkWideCIDRs refuses allow_cidrs ranges so wide that exempting them
// from the private-address filter is likely a mistake, unless a layer
// confirmed them with allow_wide_cidrs. It runs once every layer is in,
// since the confirmation may come from another file than the range.
func (r *Resolved) checkWideCIDRs() error {
	if r.Config.Egress.AllowWideCIDRs {
		return nil
	}
	var errs []error
	for _, c := range r.Config.Egress.AllowCIDRs {
		p, err := egress.ParseCIDR(c, "")
		if err != nil {
			continue // refused when the entry was applied
		}
		if why := egress.WideCIDR(p); why != "" {
			errs = append(errs, fmt.Errorf("%s: egress.allow_cidrs: %s; allow_cidrs exempts a range from the proxy's private-address filter, so list only the addresses you need, or confirm with [egress] allow_wide_cidrs = true",
				r.EntryFrom("egress.allow_cidrs", c), why))
		}
	}
	return errors.Join(errs...)
}

// assignment is one key = value found in a file.
type assignment struct {
	key   string
	line  int
	value any // as decoded by go-toml
}

// applyFile layers one TOML file over r. It reports every problem in the
// file, each as "path:line: ...", joined by newlines.
func (r *Resolved) applyFile(path string, data []byte) error {
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	var doc map[string]any
	if err := toml.Unmarshal(data, &doc); err != nil {
		var de *toml.DecodeError
		if errors.As(err, &de) {
			row, _ := de.Position()
			return fmt.Errorf("%s:%d: invalid TOML: %s", path, row, strings.TrimPrefix(de.Error(), "toml: "))
		}
		return fmt.Errorf("%s: invalid TOML: %w", path, err)
	}
	lines := keyLines(data)
	var assigns []assignment
	injects, problems := takeInjects(doc, data, path, filepath.Dir(path), path == r.projectPath, lines[injectKey])
	r.Config.Egress.Inject = append(r.Config.Egress.Inject, injects...)
	profiles, pproblems := takeProfiles(doc, path, path == r.projectPath, lines)
	problems = append(problems, pproblems...)
	for _, p := range profiles {
		r.addProfile(p)
	}
	walk(doc, "", lines, &assigns, &problems)
	sort.Slice(assigns, func(i, j int) bool { return assigns[i].line < assigns[j].line })

	dir := filepath.Dir(path)
	project := path == r.projectPath
	for _, a := range assigns {
		s, _ := lookupSetting(a.key)
		v, err := convert(s, a.value)
		if why, ok := userOnlyWhy(a.key); ok && err == nil && project && !empty(v) {
			// Refused before it is applied: a file it names is not
			// even opened.
			err = fmt.Errorf("a repository's own config may not set this (%s); set it in your user config (~/.config/airlock/config.toml) or with a flag", why)
		}
		if err == nil {
			err = r.apply(s, v, dir, fmt.Sprintf("%s:%d", path, a.line))
		}
		if err == nil && project {
			err = projectMay(a.key, v)
		}
		if err != nil {
			problems = append(problems, problem{a.line, fmt.Sprintf("%s: %v", a.key, err)})
		}
	}
	if len(problems) == 0 {
		return nil
	}
	sort.SliceStable(problems, func(i, j int) bool { return problems[i].line < problems[j].line })
	errs := make([]error, len(problems))
	for i, p := range problems {
		errs[i] = fmt.Errorf("%s:%d: %s", path, p.line, p.msg)
	}
	return errors.Join(errs...)
}

type problem struct {
	line int
	msg  string
}

// walk matches a decoded table against the schema, collecting known settings
// and reporting everything else.
func walk(table map[string]any, prefix string, lines map[string]int, assigns *[]assignment, problems *[]problem) {
	for k, v := range table {
		key := k
		if prefix != "" {
			key = prefix + "." + k
		}
		line := lines[key]
		if _, ok := lookupSetting(key); ok {
			*assigns = append(*assigns, assignment{key, line, v})
			continue
		}
		sub, isMap := v.(map[string]any)
		switch {
		case isTable(key) && isMap:
			walk(sub, key, lines, assigns, problems)
		case isTable(key):
			*problems = append(*problems, problem{line, fmt.Sprintf("%s must be a table ([%s]), got %s", key, key, describe(v))})
		case prefix == "":
			*problems = append(*problems, problem{line, fmt.Sprintf("unknown table or key %q; the tables are [%s]", key, strings.Join(childKeys(""), "], ["))})
		default:
			*problems = append(*problems, problem{line, fmt.Sprintf("unknown key %q; [%s] has: %s", key, prefix, strings.Join(childKeys(prefix), ", "))})
		}
	}
}

// convert turns a decoded TOML value into the Go type s.apply expects.
func convert(s setting, v any) (any, error) {
	orig, ok := v, false
	switch s.kind {
	case kindString:
		_, ok = v.(string)
	case kindInt:
		_, ok = v.(int64)
	case kindFloat:
		if n, isInt := v.(int64); isInt {
			v, ok = float64(n), true
		} else {
			_, ok = v.(float64)
		}
	case kindBool:
		_, ok = v.(bool)
	case kindList:
		items, isList := v.([]any)
		list := make([]string, 0, len(items))
		for _, it := range items {
			str, isStr := it.(string)
			if !isStr {
				return nil, fmt.Errorf("must be %s, but an entry is %s", s.kind, describe(it))
			}
			list = append(list, str)
		}
		v, ok = list, isList
	}
	if !ok {
		return nil, fmt.Errorf("must be %s, got %s", s.kind, describe(orig))
	}
	return v, nil
}

func describe(v any) string {
	switch v := v.(type) {
	case string:
		return fmt.Sprintf("the string %q", v)
	case int64:
		return fmt.Sprintf("the integer %d", v)
	case float64:
		return fmt.Sprintf("the number %v", v)
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	case []any:
		return "a list"
	case map[string]any:
		return "a table"
	default:
		return fmt.Sprintf("a date or time (%v)", v)
	}
}

// keyLines maps every dotted key in a TOML document, and every prefix of
// one, to the line that first mentions it. Call it only on a document that
// decoded without error.
func keyLines(data []byte) map[string]int {
	lines := map[string]int{}
	// Offsets of the newlines, to turn node offsets into lines without
	// rescanning the document per key as Parser.Shape would.
	var newlines []int
	for i, b := range data {
		if b == '\n' {
			newlines = append(newlines, i)
		}
	}
	lineOf := func(n *unstable.Node) int {
		if n == nil {
			return 0
		}
		return sort.SearchInts(newlines, int(n.Raw.Offset)) + 1
	}
	var p unstable.Parser
	p.Reset(data)
	var table []string
	for p.NextExpression() {
		e := p.Expression()
		switch e.Kind {
		case unstable.Table, unstable.ArrayTable:
			table = keyParts(e.Key())
			record(lines, table, lineOf(e.Child()))
		case unstable.KeyValue:
			recordKeyValue(lineOf, lines, table, e)
		}
	}
	return lines
}

func recordKeyValue(lineOf func(*unstable.Node) int, lines map[string]int, prefix []string, kv *unstable.Node) {
	it := kv.Key()
	key := append(append([]string{}, prefix...), keyParts(kv.Key())...)
	it.Next()
	record(lines, key, lineOf(it.Node()))
	if v := kv.Value(); v.Kind == unstable.InlineTable {
		children := v.Children()
		for children.Next() {
			if c := children.Node(); c.Kind == unstable.KeyValue {
				recordKeyValue(lineOf, lines, key, c)
			}
		}
	}
}

func keyParts(it unstable.Iterator) []string {
	var parts []string
	for it.Next() {
		parts = append(parts, string(it.Node().Data))
	}
	return parts
}

func record(lines map[string]int, key []string, line int) {
	for i := 1; i <= len(key); i++ {
		k := strings.Join(key[:i], ".")
		if _, ok := lines[k]; !ok {
			lines[k] = line
		}
	}
}

// userOnly are the settings a repository's own config may not set: each
// decides where the user's credentials go or what of the user's machine
// reaches the sandbox, and the repository may be anyone's. The user sets
// them in their own config or with a flag.
var userOnly = map[string]string{
	"egress.git_auth":        "your git host token would go to the host it names",
	"github.api_url":         "airlock pr would send your GitHub token to the URL it names",
	"egress.ca_certificates": "the proxy would trust its certificates when it sends your credentials",
	"sandbox.env_file":       "it copies a file of your machine into the sandbox's environment",
	"egress.ssh.keys":        "the sandbox could sign with your SSH keys",
	"egress.ssh.key_file":    "it loads a key of yours for the sandbox to sign with",
	"egress.ssh.hosts":       "the sandbox signs in with your SSH keys on each host it names",
	"sandbox.mounts":         "it gives the sandbox directories of your machine",
	// The proxy's pod holds your credentials: the repository must not
	// choose the cluster, the namespace or the images' registry.
	"engine.kubernetes.kubeconfig": "it chooses the cluster that receives your credentials",
	"engine.kubernetes.context":    "it chooses the cluster that receives your credentials",
	"engine.kubernetes.namespace":  "it chooses where your credentials are stored in the cluster",
	"engine.kubernetes.registry":   "it chooses where your images are pushed and pulled from",
}

// userOnlyWhy says why a repository's own config may not set key, if it
// may not: the userOnly keys, and every agent's base_url.
func userOnlyWhy(key string) (string, bool) {
	if strings.HasPrefix(key, "agent.") && strings.HasSuffix(key, ".base_url") {
		return "the model API key would go to the URL it names", true
	}
	why, ok := userOnly[key]
	return why, ok
}

// projectMay refuses, for the repository's own config, environment
// entries that take their value from the user's environment (NAME without
// =): a repository could otherwise copy the user's secrets into the
// sandbox.
func projectMay(key string, v any) error {
	if err := projectMayScan(key, v); err != nil {
		return err
	}
	if key == "sandbox.env" {
		for _, e := range v.([]string) {
			if !strings.Contains(e, "=") {
				return fmt.Errorf("%q would copy your environment's %s into the sandbox, which a repository's own config may not do; write %s=value, or pass it yourself with --env %s or in your user config", e, e, e, e)
			}
		}
	}
	return nil
}

// empty is a setting's empty value, which sets nothing.
func empty(v any) bool {
	switch v := v.(type) {
	case string:
		return v == ""
	case []string:
		return len(v) == 0
	}
	return false
}
