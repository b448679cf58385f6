package config

import (
	"fmt"
	"sort"
	"strconv"
	"strings"

	"github.com/airlock-dev/airlock/internal/prompt"
)

// FromDefault is the provenance of a value no layer set.
const FromDefault = "default"

// Resolved is a configuration together with where each value came from.
type Resolved struct {
	Config Config

	from    map[string]string // setting key -> provenance; absent = default
	envFrom map[string]string // sandbox.env NAME -> provenance
	// entryFrom: key + "\x00" + entry -> provenance, for the other
	// accumulating lists.
	entryFrom map[string]string
	// projectPath is the repository's own config file, which may not name
	// file: or cmd: sources for injected credentials.
	projectPath string
	// profiles are the defined profiles by name (Profile).
	profiles map[string]*Profile
}

// Source is one resolved setting, for `airlock config show`.
type Source struct {
	Key   string // e.g. "sandbox.memory"
	Value string // the value as TOML, e.g. "4g" (quoted) or 4096
	From  string // "default", "/path/config.toml:12", "prompt fix.md:3", "flag --model"
}

func newResolved() *Resolved {
	return &Resolved{Config: Defaults(), from: map[string]string{}, envFrom: map[string]string{}, entryFrom: map[string]string{}}
}

// From returns where key's current value came from: FromDefault, or a
// provenance as in Source.From. For sandbox.env it is the layer that last
// added an entry.
func (r *Resolved) From(key string) string {
	if f, ok := r.from[key]; ok {
		return f
	}
	return FromDefault
}

// Set sets key from a string, as a flag gives it, with the same validation as
// the files. from names the source, e.g. "flag --model". For list settings
// the value is one entry: the first Set from a source replaces the list
// (sandbox.env: adds to it) and later ones from the same source append, so a
// repeated flag builds a list. Relative paths are made absolute against the
// working directory.
func (r *Resolved) Set(key, value, from string) error {
	s, ok := lookupSetting(key)
	if !ok {
		return fmt.Errorf("%s: unknown setting %q; known settings: %s", from, key, strings.Join(keysOf(settings), ", "))
	}
	var v any
	var err error
	switch s.kind {
	case kindString:
		v = value
	case kindInt:
		v, err = strconv.ParseInt(strings.TrimSpace(value), 10, 64)
	case kindFloat:
		var f float64
		f, err = strconv.ParseFloat(strings.TrimSpace(value), 64)
		v = f
	case kindBool:
		v, err = strconv.ParseBool(strings.TrimSpace(value))
	case kindList:
		list := []string{value}
		if key == "image.ca_certificates" && r.from[key] == from {
			list = append(append([]string{}, r.Config.Image.CACertificates...), value)
		}
		if key == "sandbox.caches" && r.from[key] == from {
			list = append(append([]string{}, r.Config.Sandbox.Caches...), value)
		}
		v = list
	}
	if err != nil {
		return fmt.Errorf("%s: %s must be %s, got %q", from, key, s.kind, value)
	}
	if err := r.apply(s, v, "", from); err != nil {
		return fmt.Errorf("%s: %s: %w", from, key, err)
	}
	return nil
}

// ApplyPrompt layers a prompt's frontmatter over the configuration: model,
// max_turns, image (as image.name) and env. Only keys present in the
// frontmatter count. The prompt's name and branch are not configuration; the
// caller reads them from p.
func (r *Resolved) ApplyPrompt(p *prompt.Prompt) error {
	fromKey := func(k string) string { return fmt.Sprintf("prompt %s:%d", p.Path, p.Lines[k]) }
	type kv struct {
		promptKey, key string
		value          any
	}
	for _, a := range []kv{
		{"agent", "agent.name", p.Agent},
		{"model", "agent.model", p.Model},
		{"max_turns", "agent.max_turns", int64(p.MaxTurns)},
		{"image", "image.name", p.Image},
		{"env", "sandbox.env", p.Env},
		{"allow", "egress.allow", p.Allow},
		{"setup", "sandbox.setup", p.Setup},
	} {
		if _, ok := p.Lines[a.promptKey]; !ok {
			continue
		}
		s, _ := lookupSetting(a.key)
		if err := r.apply(s, a.value, "", fromKey(a.promptKey)); err != nil {
			return fmt.Errorf("%s: %s: %w", fromKey(a.promptKey), a.promptKey, err)
		}
	}
	return nil
}

// apply stores v and records from as its provenance.
func (r *Resolved) apply(s setting, v any, dir, from string) error {
	if err := s.apply(&r.Config, v, dir); err != nil {
		return err
	}
	r.from[s.key] = from
	switch {
	case s.key == "sandbox.env":
		for _, e := range v.([]string) {
			r.envFrom[envName(e)] = from
		}
	case accumulating[s.key]:
		for _, e := range v.([]string) {
			if _, ok := r.entryFrom[s.key+"\x00"+e]; !ok {
				r.entryFrom[s.key+"\x00"+e] = from
			}
		}
	}
	return nil
}

// Sources lists every setting with its value and provenance, sorted by key.
// sandbox.env gets one row per entry (or one "[]" row when empty).
func (r *Resolved) Sources() []Source {
	var out []Source
	for _, s := range settings {
		if accumulating[s.key] && s.key != "sandbox.env" {
			entries := r.entries(s.key)
			if len(entries) == 0 {
				out = append(out, Source{Key: s.key, Value: "[]", From: r.From(s.key)})
			}
			for _, e := range entries {
				out = append(out, Source{Key: s.key, Value: quote(e), From: r.entryFrom[s.key+"\x00"+e]})
			}
			continue
		}
		if s.key != "sandbox.env" {
			out = append(out, Source{Key: s.key, Value: s.show(&r.Config), From: r.From(s.key)})
			continue
		}
		if len(r.Config.Sandbox.Env) == 0 {
			out = append(out, Source{Key: s.key, Value: "[]", From: r.From(s.key)})
		}
		for _, e := range r.Config.Sandbox.Env {
			out = append(out, Source{Key: s.key, Value: quote(e), From: r.envFrom[envName(e)]})
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key < out[j].Key })
	return out
}

// entries is the current list of an accumulating setting.
func (r *Resolved) entries(key string) []string {
	switch key {
	case "egress.allow":
		return r.Config.Egress.Allow
	case "egress.deny":
		return r.Config.Egress.Deny
	case "egress.allow_cidrs":
		return r.Config.Egress.AllowCIDRs
	case "egress.extra_hosts":
		return r.Config.Egress.ExtraHosts
	case "egress.ca_certificates":
		return r.Config.Egress.CACertificates
	case "egress.scan_block":
		return r.Config.Egress.ScanBlock
	case "egress.scan_log":
		return r.Config.Egress.ScanLog
	case "egress.scan_off":
		return r.Config.Egress.ScanOff
	}
	return nil
}

// EntryFrom is where one entry of an accumulating list came from.
func (r *Resolved) EntryFrom(key, entry string) string {
	if f, ok := r.entryFrom[key+"\x00"+entry]; ok {
		return f
	}
	return FromDefault
}
