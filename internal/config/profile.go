package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"sort"
	"strings"

	toml "github.com/pelletier/go-toml/v2"
)

// A Profile is a named set of settings a run can ask for with --profile:
// which agent and model, its environment, hosts, mounts, caches and setup,
// a preamble put before the prompt, and the agent's own configuration
// brought in from the user's home. Profiles are [profiles.NAME] tables in
// any config layer, or .airlock/profiles/NAME.toml in the repository; a
// later definition of a name replaces an earlier one whole.
type Profile struct {
	Name string
	// Source is where it was defined: "path:line".
	Source string
	// Project says it comes from the repository (anyone's), so it may set
	// only what a repository's own config may.
	Project bool
	// Preamble goes before the prompt's text.
	Preamble string
	// Bring names the agent's own configuration to copy into the sandbox
	// from the user's home (BringItems).
	Bring []string

	settings []assignment // mapped to config keys, validated
	dir      string       // relative paths are against it
}

// profileKeys maps a profile's keys to the settings they set.
var profileKeys = map[string]string{
	"agent":     "agent.name",
	"model":     "agent.model",
	"max_turns": "agent.max_turns",
	"image":     "image.name",
	"env":       "sandbox.env",
	"allow":     "egress.allow",
	"deny":      "egress.deny",
	"mounts":    "sandbox.mounts",
	"caches":    "sandbox.caches",
	"setup":     "sandbox.setup",
}

// BringItems are what a profile's bring may name: the agent's own
// instructions file (Claude Code's ~/.claude/CLAUDE.md), its custom slash
// commands and sub-agents, and the MCP servers of the user's settings.
var BringItems = []string{"instructions", "commands", "agents", "mcp"}

// ProfileKeys are the keys a profile may have, sorted.
func ProfileKeys() []string {
	keys := []string{"preamble", "bring"}
	for k := range profileKeys {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

var profileNameRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// maxPreamble bounds a profile's preamble, which goes into every prompt.
const maxPreamble = 64 << 10

// takeProfiles removes the [profiles] table from a decoded file and parses
// each profile in it.
func takeProfiles(doc map[string]any, path string, project bool, lines map[string]int) ([]*Profile, []problem) {
	raw, ok := doc["profiles"]
	if !ok {
		return nil, nil
	}
	delete(doc, "profiles")
	table, isMap := raw.(map[string]any)
	if !isMap {
		return nil, []problem{{lines["profiles"], fmt.Sprintf("profiles must be a table of profiles ([profiles.NAME]), got %s", describe(raw))}}
	}
	var out []*Profile
	var problems []problem
	names := make([]string, 0, len(table))
	for name := range table {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		body, isMap := table[name].(map[string]any)
		line := lines["profiles."+name]
		if !isMap {
			problems = append(problems, problem{line, fmt.Sprintf("profiles.%s must be a table ([profiles.%s]), got %s", name, name, describe(table[name]))})
			continue
		}
		p, errs := parseProfile(name, body, path, project, func(k string) int {
			if l := lines["profiles."+name+"."+k]; l > 0 {
				return l
			}
			return line
		})
		problems = append(problems, errs...)
		if p != nil {
			p.Source = fmt.Sprintf("%s:%d", path, line)
			out = append(out, p)
		}
	}
	return out, problems
}

// parseProfile checks a profile's keys and values; it returns nil if any
// is wrong, with every problem.
func parseProfile(name string, body map[string]any, path string, project bool, lineOf func(string) int) (*Profile, []problem) {
	var problems []problem
	bad := func(k, format string, args ...any) {
		problems = append(problems, problem{lineOf(k), fmt.Sprintf("profiles.%s.%s: ", name, k) + fmt.Sprintf(format, args...)})
	}
	if !profileNameRE.MatchString(name) {
		problems = append(problems, problem{lineOf(""), fmt.Sprintf("profile name %q: use lower-case letters, digits and hyphens", name)})
	}
	p := &Profile{Name: name, Project: project, dir: filepath.Dir(path)}
	keys := make([]string, 0, len(body))
	for k := range body {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		v := body[k]
		switch k {
		case "preamble":
			s, ok := v.(string)
			switch {
			case !ok:
				bad(k, "must be text, got %s", describe(v))
			case len(s) > maxPreamble:
				bad(k, "is %d bytes; at most %d", len(s), maxPreamble)
			default:
				p.Preamble = strings.TrimSpace(s)
			}
			continue
		case "bring":
			list, err := convert(setting{kind: kindList}, v)
			if err != nil {
				bad(k, "%v", err)
				continue
			}
			for _, item := range list.([]string) {
				if !slices.Contains(BringItems, item) {
					bad(k, "unknown item %q; bring may name %s", item, strings.Join(BringItems, ", "))
					continue
				}
				if project {
					bad(k, "a repository's profile may not bring your own agent configuration into the sandbox; define the profile in your user config")
					break
				}
				p.Bring = append(p.Bring, item)
			}
			continue
		}
		key, ok := profileKeys[k]
		if !ok {
			bad(k, "unknown key; a profile has: %s", strings.Join(ProfileKeys(), ", "))
			continue
		}
		s, _ := lookupSetting(key)
		cv, err := convert(s, v)
		if err != nil {
			bad(k, "%v", err)
			continue
		}
		if why, ok := userOnlyWhy(key); ok && project && !empty(cv) {
			bad(k, "a repository's own profile may not set this (%s); define the profile in your user config", why)
			continue
		}
		if project {
			if err := projectMay(key, cv); err != nil {
				bad(k, "%v", err)
				continue
			}
		}
		// Validated now, against a scratch config, so that a bad value is
		// reported with its line whether or not the profile is used.
		scratch := Defaults()
		if err := s.apply(&scratch, cv, p.dir); err != nil {
			bad(k, "%v", err)
			continue
		}
		p.settings = append(p.settings, assignment{key: key, line: lineOf(k), value: cv})
	}
	if len(problems) > 0 {
		return nil, problems
	}
	return p, nil
}

// loadProfileFiles reads the repository's .airlock/profiles/NAME.toml
// files: each holds one profile's keys at the top level.
func (r *Resolved) loadProfileFiles(repoRoot string) error {
	dir := filepath.Join(repoRoot, ".airlock", "profiles")
	entries, err := os.ReadDir(dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return fmt.Errorf("read profiles: %w", err)
	}
	var errs []error
	for _, e := range entries {
		name, ok := strings.CutSuffix(e.Name(), ".toml")
		if !ok || !e.Type().IsRegular() {
			continue
		}
		path := filepath.Join(dir, e.Name())
		data, err := os.ReadFile(path)
		if err != nil {
			errs = append(errs, fmt.Errorf("read profile: %w", err))
			continue
		}
		var body map[string]any
		if err := toml.Unmarshal(data, &body); err != nil {
			var de *toml.DecodeError
			if errors.As(err, &de) {
				row, _ := de.Position()
				errs = append(errs, fmt.Errorf("%s:%d: invalid TOML: %s", path, row, strings.TrimPrefix(de.Error(), "toml: ")))
			} else {
				errs = append(errs, fmt.Errorf("%s: invalid TOML: %w", path, err))
			}
			continue
		}
		lines := keyLines(data)
		p, problems := parseProfile(name, body, path, true, func(k string) int { return max(lines[k], 1) })
		for _, pr := range problems {
			errs = append(errs, fmt.Errorf("%s:%d: %s", path, pr.line, pr.msg))
		}
		if p != nil {
			p.Source = path
			r.addProfile(p)
		}
	}
	return errors.Join(errs...)
}

func (r *Resolved) addProfile(p *Profile) {
	if r.profiles == nil {
		r.profiles = map[string]*Profile{}
	}
	r.profiles[p.Name] = p
}

// Profiles lists the defined profiles by name.
func (r *Resolved) Profiles() []*Profile {
	out := make([]*Profile, 0, len(r.profiles))
	for _, p := range r.profiles {
		out = append(out, p)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
	return out
}

// Settings lists what the profile sets, as "key = value" with the
// setting's config key, for people.
func (p *Profile) Settings() []string {
	var out []string
	for _, a := range p.settings {
		out = append(out, fmt.Sprintf("%s = %s", a.key, showValue(a.value)))
	}
	return out
}

func showValue(v any) string {
	switch v := v.(type) {
	case string:
		return quote(v)
	case []string:
		return quoteList(v)
	default:
		return fmt.Sprint(v)
	}
}

// ApplyProfile layers the named profile over the configuration files
// (below the prompt's frontmatter and the flags, which the caller applies
// after) and returns it.
func (r *Resolved) ApplyProfile(name, from string) (*Profile, error) {
	p, ok := r.profiles[name]
	if !ok {
		names := make([]string, 0, len(r.profiles))
		for n := range r.profiles {
			names = append(names, n)
		}
		sort.Strings(names)
		if len(names) == 0 {
			return nil, fmt.Errorf("%s: no profile %q: none is defined ([profiles.NAME] in a config file, or .airlock/profiles/NAME.toml)", from, name)
		}
		return nil, fmt.Errorf("%s: no profile %q; the profiles are %s", from, name, strings.Join(names, ", "))
	}
	for _, a := range p.settings {
		s, _ := lookupSetting(a.key)
		if err := r.apply(s, a.value, p.dir, fmt.Sprintf("profile %s (%s)", p.Name, p.Source)); err != nil {
			return nil, fmt.Errorf("profile %s (%s): %s: %w", p.Name, p.Source, a.key, err)
		}
	}
	return p, nil
}
