package sandbox

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"slices"
	"sort"
	"strings"

	"github.com/moby/buildkit/frontend/dockerfile/parser"
	"github.com/moby/buildkit/frontend/dockerfile/shell"
)

// Incus has no image builder, so airlock runs a Dockerfile itself: it reads
// the file into a plan here, checking every instruction before anything is
// created, and runs the plan in a build instance (incus_build.go). Only the
// instructions airlock's own Dockerfiles and a project's .airlock/Dockerfile
// reasonably need are supported; anything else is refused by name and line.

// incusBuildInstructions are the instructions the Incus builder runs.
var incusBuildInstructions = []string{"FROM", "ARG", "ENV", "COPY", "RUN", "USER", "WORKDIR", "LABEL", "ENTRYPOINT", "CMD"}

// The image properties through which an Incus image carries the runtime
// configuration a Docker image keeps in its config: JSON arrays for env,
// entrypoint and cmd, plain strings for user and workdir, a JSON object for
// labels. An image without them (an imported root file system) has an
// empty configuration.
const (
	incusPropEnv        = "airlock.env"
	incusPropUser       = "airlock.user"
	incusPropWorkDir    = "airlock.workdir"
	incusPropEntrypoint = "airlock.entrypoint"
	incusPropCmd        = "airlock.cmd"
	incusPropLabels     = "airlock.labels"
)

// defaultPath is the PATH a RUN step gets when the image sets none, as
// Docker's builder gives it.
const defaultPath = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

// imageConfig is an image's runtime configuration, Docker's fields that
// airlock uses.
type imageConfig struct {
	Env        []string // NAME=value, in order, each name once
	User       string
	WorkDir    string
	Entrypoint []string
	Cmd        []string
	Labels     map[string]string
}

// configFromProperties reads an image's configuration from its properties.
func configFromProperties(props map[string]string) (imageConfig, error) {
	var c imageConfig
	for _, f := range []struct {
		key string
		dst any
	}{
		{incusPropEnv, &c.Env}, {incusPropEntrypoint, &c.Entrypoint}, {incusPropCmd, &c.Cmd}, {incusPropLabels, &c.Labels},
	} {
		if v := props[f.key]; v != "" {
			if err := json.Unmarshal([]byte(v), f.dst); err != nil {
				return imageConfig{}, fmt.Errorf("image property %s: %w", f.key, err)
			}
		}
	}
	c.User, c.WorkDir = props[incusPropUser], props[incusPropWorkDir]
	return c, nil
}

// properties writes c as image properties; empty fields are left out.
func (c imageConfig) properties() map[string]string {
	props := map[string]string{}
	put := func(key string, v any, empty bool) {
		if !empty {
			b, _ := json.Marshal(v) // slices and maps of strings always marshal
			props[key] = string(b)
		}
	}
	put(incusPropEnv, c.Env, len(c.Env) == 0)
	put(incusPropEntrypoint, c.Entrypoint, c.Entrypoint == nil)
	put(incusPropCmd, c.Cmd, c.Cmd == nil)
	put(incusPropLabels, c.Labels, len(c.Labels) == 0)
	if c.User != "" {
		props[incusPropUser] = c.User
	}
	if c.WorkDir != "" {
		props[incusPropWorkDir] = c.WorkDir
	}
	return props
}

// setEnv sets name in env, in place if it is there, else at the end.
func setEnv(env []string, name, value string) []string {
	for i, kv := range env {
		if k, _, _ := strings.Cut(kv, "="); k == name {
			env = slices.Clone(env)
			env[i] = name + "=" + value
			return env
		}
	}
	return append(slices.Clone(env), name+"="+value)
}

func lookupEnv(env []string, name string) (string, bool) {
	for _, kv := range env {
		if k, v, _ := strings.Cut(kv, "="); k == name {
			return v, true
		}
	}
	return "", false
}

// dfInstruction is one instruction of a Dockerfile as read, before any
// variable is expanded.
type dfInstruction struct {
	Line     int
	Original string   // the instruction as written, continuation lines joined
	Name     string   // upper case: "RUN"
	Args     []string // its words; for a shell-form RUN, CMD or ENTRYPOINT one string
	JSON     bool     // exec form (a JSON array)
	Chown    string   // COPY --chown
}

// dfPlan is a Dockerfile read and checked: its one FROM and what follows.
type dfPlan struct {
	File     string          // the Dockerfile's name in the context, for errors
	MetaArgs []dfInstruction // the ARGs before FROM
	From     dfInstruction
	Steps    []dfInstruction // after FROM
}

// stepCount is what "Step N/M" counts: every instruction, FROM included.
func (p *dfPlan) stepCount() int { return len(p.MetaArgs) + 1 + len(p.Steps) }

func (p *dfPlan) errorf(line int, format string, args ...any) error {
	return fmt.Errorf("%s line %d: %s", p.File, line, fmt.Sprintf(format, args...))
}

// parseDockerfile reads a Dockerfile and refuses, naming the instruction and
// its line, anything the Incus builder cannot do.
func parseDockerfile(name string, data []byte) (*dfPlan, error) {
	p := &dfPlan{File: name}
	res, err := parser.Parse(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	supported := strings.Join(incusBuildInstructions, ", ")
	haveFrom := false
	for _, n := range res.AST.Children {
		in := dfInstruction{Line: n.StartLine, Original: n.Original, Name: strings.ToUpper(n.Value), JSON: n.Attributes["json"]}
		for a := n.Next; a != nil; a = a.Next {
			in.Args = append(in.Args, a.Value)
		}
		if !slices.Contains(incusBuildInstructions, in.Name) {
			return nil, p.errorf(in.Line, "%s is not supported on Incus (its builder runs %s)", in.Name, supported)
		}
		if len(n.Heredocs) > 0 {
			return nil, p.errorf(in.Line, "%s with a heredoc is not supported on Incus", in.Name)
		}
		for _, f := range n.Flags {
			if v, ok := strings.CutPrefix(f, "--chown="); ok && in.Name == "COPY" && v != "" {
				in.Chown = v
				continue
			}
			return nil, p.errorf(in.Line, "%s %s is not supported on Incus", in.Name, f)
		}
		if err := p.checkArgs(in); err != nil {
			return nil, err
		}
		switch {
		case in.Name == "FROM" && haveFrom:
			return nil, p.errorf(in.Line, "a second FROM (a multi-stage build) is not supported on Incus")
		case in.Name == "FROM":
			p.From, haveFrom = in, true
		case !haveFrom && in.Name != "ARG":
			return nil, p.errorf(in.Line, "%s before FROM: only ARG may come before FROM", in.Name)
		case !haveFrom:
			p.MetaArgs = append(p.MetaArgs, in)
		default:
			p.Steps = append(p.Steps, in)
		}
	}
	if !haveFrom {
		return nil, fmt.Errorf("%s: no FROM instruction", name)
	}
	return p, nil
}

// checkArgs checks an instruction's arguments, whose shape the parser
// leaves loose.
func (p *dfPlan) checkArgs(in dfInstruction) error {
	switch in.Name {
	case "FROM":
		if len(in.Args) != 1 && !(len(in.Args) == 3 && strings.EqualFold(in.Args[1], "as")) {
			return p.errorf(in.Line, "FROM takes an image (and optionally AS name): %s", in.Original)
		}
	case "ARG":
		if len(in.Args) == 0 {
			return p.errorf(in.Line, "ARG needs a name")
		}
		for _, a := range in.Args {
			if name, _, _ := strings.Cut(a, "="); !validVarName(name) {
				return p.errorf(in.Line, "ARG %q: not a valid variable name", name)
			}
		}
	case "ENV", "LABEL":
		// The parser gives name, value and separator for each pair.
		if len(in.Args) == 0 || len(in.Args)%3 != 0 {
			return p.errorf(in.Line, "%s needs NAME=value pairs: %s", in.Name, in.Original)
		}
	case "COPY":
		if len(in.Args) < 2 {
			return p.errorf(in.Line, "COPY needs a source and a destination: %s", in.Original)
		}
	case "RUN", "ENTRYPOINT", "CMD":
		if len(in.Args) == 0 && in.Name == "RUN" {
			return p.errorf(in.Line, "RUN needs a command")
		}
	case "USER", "WORKDIR":
		if len(in.Args) != 1 || in.Name == "USER" && strings.ContainsAny(in.Args[0], " \t") {
			return p.errorf(in.Line, "%s takes one argument: %s", in.Name, in.Original)
		}
	}
	return nil
}

func validVarName(s string) bool {
	if s == "" {
		return false
	}
	for i, r := range s {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || i > 0 && r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// varEnv is what ${NAME} expands to: the image's ENV, then the build's
// ARGs, as Docker's builder does.
type varEnv struct {
	env  []string
	args map[string]string
}

func (v varEnv) Get(name string) (string, bool) {
	if val, ok := lookupEnv(v.env, name); ok {
		return val, true
	}
	val, ok := v.args[name]
	return val, ok
}

func (v varEnv) Keys() []string {
	keys := make([]string, 0, len(v.env)+len(v.args))
	for _, kv := range v.env {
		k, _, _ := strings.Cut(kv, "=")
		keys = append(keys, k)
	}
	for k := range v.args {
		keys = append(keys, k)
	}
	return keys
}

// baseRef expands FROM with the ARGs before it.
func (p *dfPlan) baseRef(buildArgs map[string]string) (string, error) {
	meta, err := p.metaArgValues(buildArgs)
	if err != nil {
		return "", err
	}
	ref, _, err := shell.NewLex('\\').ProcessWord(p.From.Args[0], varEnv{args: meta})
	if err != nil {
		return "", p.errorf(p.From.Line, "FROM %s: %v", p.From.Args[0], err)
	}
	if ref == "" {
		return "", p.errorf(p.From.Line, "FROM %s is empty (is the build argument set?)", p.From.Args[0])
	}
	return ref, nil
}

func (p *dfPlan) metaArgValues(buildArgs map[string]string) (map[string]string, error) {
	meta := map[string]string{}
	lex := shell.NewLex('\\')
	for _, in := range p.MetaArgs {
		for _, a := range in.Args {
			name, def, hasDef := strings.Cut(a, "=")
			if v, ok := buildArgs[name]; ok {
				meta[name] = v
				continue
			}
			if hasDef {
				v, _, err := lex.ProcessWord(def, varEnv{args: meta})
				if err != nil {
					return nil, p.errorf(in.Line, "ARG %s: %v", a, err)
				}
				meta[name] = v
			}
		}
	}
	return meta, nil
}

// buildOp is one thing the builder does in the build instance.
type buildOp struct {
	Step string // "Step 3/9 : RUN ...", for progress and errors
	Kind string // "run", "copy", "mkdir" (WORKDIR), "" (configuration only)

	// run: Argv as User in Dir with Env.
	Argv []string
	Env  []string
	User string
	Dir  string

	// copy: Sources (cleaned, relative to the context; may hold globs)
	// into Dest (absolute), owned by Chown ("" is root).
	Sources []string
	Dest    string
	Chown   string
}

// expand turns the plan into operations, on top of the base image's
// configuration, and returns the configuration the image ends with.
// Variables are expanded here, so a bad substitution fails before any
// instance exists.
func (p *dfPlan) expand(base imageConfig, buildArgs map[string]string) ([]buildOp, imageConfig, error) {
	meta, err := p.metaArgValues(buildArgs)
	if err != nil {
		return nil, imageConfig{}, err
	}
	cfg := base
	cfg.Env = slices.Clone(base.Env)
	cfg.Labels = map[string]string{}
	for k, v := range base.Labels {
		cfg.Labels[k] = v
	}
	args := map[string]string{}
	lex := shell.NewLex('\\')
	word := func(in dfInstruction, w string) (string, error) {
		v, _, err := lex.ProcessWord(w, varEnv{env: cfg.Env, args: args})
		if err != nil {
			return "", p.errorf(in.Line, "%s: %v", in.Original, err)
		}
		return v, nil
	}
	ops := make([]buildOp, 0, len(p.Steps))
	setEntrypoint, setCmd := false, false
	n := len(p.MetaArgs) + 1
	for _, in := range p.Steps {
		n++
		op := buildOp{Step: fmt.Sprintf("Step %d/%d : %s", n, p.stepCount(), in.Original)}
		switch in.Name {
		case "ARG":
			for _, a := range in.Args {
				name, def, hasDef := strings.Cut(a, "=")
				switch v, given := buildArgs[name]; {
				case given:
					args[name] = v
				case hasDef:
					if args[name], err = word(in, def); err != nil {
						return nil, imageConfig{}, err
					}
				default:
					if v, ok := meta[name]; ok {
						args[name] = v
					}
				}
			}
		case "ENV", "LABEL":
			for i := 0; i+1 < len(in.Args); i += 3 {
				k, err := word(in, in.Args[i])
				if err != nil {
					return nil, imageConfig{}, err
				}
				v, err := word(in, in.Args[i+1])
				if err != nil {
					return nil, imageConfig{}, err
				}
				if in.Name == "LABEL" {
					cfg.Labels[k] = v
					continue
				}
				if !validVarName(k) {
					return nil, imageConfig{}, p.errorf(in.Line, "ENV %q: not a valid variable name", k)
				}
				cfg.Env = setEnv(cfg.Env, k, v)
			}
		case "USER":
			if cfg.User, err = word(in, in.Args[0]); err != nil {
				return nil, imageConfig{}, err
			}
			if cfg.User == "" {
				return nil, imageConfig{}, p.errorf(in.Line, "USER is empty: %s", in.Original)
			}
		case "WORKDIR":
			dir, err := word(in, in.Args[0])
			if err != nil {
				return nil, imageConfig{}, err
			}
			cfg.WorkDir = path.Join("/", cfg.WorkDir, dir)
			if path.IsAbs(dir) {
				cfg.WorkDir = path.Clean(dir)
			}
			op.Kind, op.Dest, op.User = "mkdir", cfg.WorkDir, cfg.User
		case "COPY":
			op.Kind = "copy"
			words := make([]string, len(in.Args))
			for i, a := range in.Args {
				if words[i], err = word(in, a); err != nil {
					return nil, imageConfig{}, err
				}
			}
			if op.Chown, err = word(in, in.Chown); err != nil {
				return nil, imageConfig{}, err
			}
			dest := words[len(words)-1]
			if !path.IsAbs(dest) {
				trailing := strings.HasSuffix(dest, "/")
				dest = path.Join("/", cfg.WorkDir, dest)
				if trailing {
					dest += "/"
				}
			}
			op.Dest = dest
			for _, src := range words[:len(words)-1] {
				clean := path.Clean("/" + src)[1:]
				if c := path.Clean(src); c == ".." || strings.HasPrefix(c, "../") {
					return nil, imageConfig{}, p.errorf(in.Line, "COPY %s: outside the build context", src)
				}
				if clean == "" {
					clean = "."
				}
				op.Sources = append(op.Sources, clean)
			}
			if len(op.Sources) > 1 && !strings.HasSuffix(op.Dest, "/") {
				return nil, imageConfig{}, p.errorf(in.Line, "COPY with several sources needs a destination ending in /: %s", in.Original)
			}
		case "RUN":
			op.Kind = "run"
			op.Argv = in.Args
			if !in.JSON {
				op.Argv = []string{"/bin/sh", "-c", in.Args[0]}
			}
			op.Env = slices.Clone(cfg.Env)
			// Build arguments reach RUN as variables, below the image's ENV.
			names := make([]string, 0, len(args))
			for k := range args {
				names = append(names, k)
			}
			sort.Strings(names)
			for _, k := range names {
				if _, ok := lookupEnv(op.Env, k); !ok {
					op.Env = append(op.Env, k+"="+args[k])
				}
			}
			if _, ok := lookupEnv(op.Env, "PATH"); !ok {
				op.Env = append(op.Env, "PATH="+defaultPath)
			}
			op.User, op.Dir = cfg.User, cfg.WorkDir
		case "ENTRYPOINT", "CMD":
			argv := in.Args
			switch {
			case len(in.Args) == 0:
				argv = nil
			case !in.JSON:
				argv = []string{"/bin/sh", "-c", in.Args[0]}
			}
			if argv == nil {
				argv = []string{}
			}
			if in.Name == "CMD" {
				cfg.Cmd, setCmd = argv, true
			} else {
				cfg.Entrypoint, setEntrypoint = argv, true
			}
		}
		ops = append(ops, op)
	}
	// As in Docker, a new ENTRYPOINT drops the base image's CMD.
	if setEntrypoint && !setCmd {
		cfg.Cmd = nil
	}
	return ops, cfg, nil
}

// errNoContext is returned when a BuildRequest has neither Files nor a
// ContextDir.
var errNoContext = errors.New("no build context: set ContextDir or Files")
