// Package devcontainer reads the part of a project's dev container
// definition (.devcontainer/devcontainer.json, https://containers.dev) that
// airlock honours when it builds the project's agent images: the image, or a
// Dockerfile with its context and build arguments; local features; the
// container's environment; and the commands run once the container exists,
// which become the run's setup commands.
//
// The file is the repository's, so anyone's: nothing in it may reach the
// host. Keys that would (mounts, runArgs, privileges, a command run on the
// host) are never applied; Load lists them in Config.Ignored with the
// reason, and refuses what it cannot honour faithfully (a feature from a
// registry, a compose file, a host environment variable copied in).
package devcontainer

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"

	"github.com/tailscale/hujson"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/prompt"
)

// Paths are where a project keeps its definition, relative to the
// project, in the order the specification looks for them.
var Paths = []string{".devcontainer/devcontainer.json", ".devcontainer.json"}

const (
	// maxFile caps devcontainer.json and devcontainer-feature.json.
	maxFile = 1 << 20
	// maxFeature caps the files of one local feature, which go into the
	// build context in memory.
	maxFeature = 16 << 20
	// Workspace is where the project's copy is in the sandbox: the
	// container's workspace folder.
	Workspace = "/workspace"
)

// Config is what airlock uses of a devcontainer.json.
type Config struct {
	File string // absolute path of the devcontainer.json
	Data []byte // its content as read; hashed into image tags

	Image string // the base image, when the file names one
	Build *Build // the base built from a Dockerfile, when it names one

	Features []Feature // local features, in install order
	// Env is containerEnv then remoteEnv, each in file order. A value may
	// hold ${containerEnv:NAME} (the base image's variable); every other
	// variable has been resolved.
	Env []Var
	// Setup are the commands run in the sandbox's workspace before the
	// agent: each feature's, then the file's onCreateCommand,
	// updateContentCommand and postCreateCommand, as /bin/sh command lines.
	Setup []string
	// Ignored are the keys present but not applied, with why.
	Ignored []Ignored
}

// Build is a base image built from the project's Dockerfile.
type Build struct {
	Context    string            // absolute directory, inside the project
	Dockerfile string            // slash-separated path within Context
	Args       map[string]string // build arguments
	Target     string            // the stage built; "" the last
}

// Feature is a local feature: a directory with devcontainer-feature.json
// and install.sh, run as root during the image build.
type Feature struct {
	ID    string            // as the devcontainer.json names it: "./tools"
	Files map[string][]byte // its files: slash path within the feature -> content
	Exec  []string          // the paths of Files that are executable
	// Options are the install script's environment: each option as an
	// upper-cased variable, the user's value or the option's default.
	Options []Var
	Env     []Var // the feature's containerEnv
}

// Var is an environment variable.
type Var struct{ Name, Value string }

// Ignored is a key of the file that airlock does not apply.
type Ignored struct {
	Key    string // "runArgs", or "features./x: privileged"
	Line   int
	Reason string
}

func (i Ignored) String() string { return fmt.Sprintf("%s (line %d): %s", i.Key, i.Line, i.Reason) }

// Why keys are not applied.
const (
	whyHost     = "never applied: a repository's file may not give its sandbox host paths, devices, privileges or network"
	whyUser     = "the agent runs as user agent, with your uid"
	whyStart    = "airlock has no start or attach hook; put the command in [sandbox] setup or the Dockerfile"
	whyEditor   = "editor and tool settings"
	whyPorts    = "ports are forwarded with airlock run -p"
	whyHostCmd  = "never run: it runs on the host, and airlock runs no repository command there"
	whyResource = "limits come from [sandbox] memory, cpus, pids and disk"
)

// ignoredKeys are the specification's keys airlock does not apply.
var ignoredKeys = map[string]string{
	"mounts": whyHost, "runArgs": whyHost, "workspaceMount": whyHost, "privileged": whyHost,
	"capAdd": whyHost, "securityOpt": whyHost, "init": "airlock's images run tini already",
	"appPort": whyPorts, "forwardPorts": whyPorts, "portsAttributes": whyPorts, "otherPortsAttributes": whyPorts,
	"workspaceFolder":   "the project's copy is always at " + Workspace,
	"initializeCommand": whyHostCmd,
	"postStartCommand":  whyStart, "postAttachCommand": whyStart,
	"remoteUser": whyUser, "containerUser": whyUser, "updateRemoteUserUID": whyUser, "userEnvProbe": whyUser,
	"hostRequirements": whyResource, "gpuRequirements": whyResource,
	"overrideCommand": "airlock starts the agent itself", "shutdownAction": "airlock stops its containers itself",
	"waitFor":        "setup commands always finish before the agent starts",
	"customizations": whyEditor, "name": whyEditor, "$schema": whyEditor,
	"overrideFeatureInstallOrder": "features install in the order the file lists them",
}

// Quiet reports whether an ignored key changes nothing a user would miss,
// so that listing it would be noise.
func (i Ignored) Quiet() bool {
	switch i.Key {
	case "name", "$schema", "customizations":
		return true
	}
	return false
}

// Find returns the project's devcontainer.json, or "" if it has none.
func Find(project string) (string, error) {
	for _, p := range Paths {
		path := filepath.Join(project, p)
		info, err := os.Lstat(path)
		switch {
		case errors.Is(err, fs.ErrNotExist):
			continue
		case err != nil:
			return "", fmt.Errorf("dev container: %w", err)
		case !info.Mode().IsRegular():
			return "", fmt.Errorf("%s: not a regular file", path)
		}
		return path, nil
	}
	return "", nil
}

// Load reads the project's devcontainer.json, or returns nil if it has none.
func Load(project string) (*Config, error) {
	path, err := Find(project)
	if err != nil || path == "" {
		return nil, err
	}
	data, err := readCapped(path)
	if err != nil {
		return nil, err
	}
	return Parse(project, path, data)
}

func readCapped(path string) ([]byte, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	var b bytes.Buffer
	if _, err := b.ReadFrom(&limitReader{f, maxFile + 1}); err != nil {
		return nil, fmt.Errorf("read %s: %w", path, err)
	}
	if b.Len() > maxFile {
		return nil, fmt.Errorf("%s: larger than %d bytes", path, maxFile)
	}
	return b.Bytes(), nil
}

type limitReader struct {
	f *os.File
	n int64
}

func (l *limitReader) Read(p []byte) (int, error) {
	if l.n <= 0 {
		return 0, errors.New("file too large")
	}
	if int64(len(p)) > l.n {
		p = p[:l.n]
	}
	n, err := l.f.Read(p)
	l.n -= int64(n)
	return n, err
}

// member is one key of a JSON object, with its value as standard JSON.
type member struct {
	name string
	line int
	raw  []byte
	val  hujson.Value
}

// document is a parsed JSON-with-comments file.
type document struct {
	file string
	std  []byte // the text with comments and trailing commas blanked: offsets unchanged
}

// parseObject parses data (JSON with comments and trailing commas, as the
// specification allows) whose top level must be an object.
func parseObject(file string, data []byte) (*document, []member, error) {
	v, err := hujson.Parse(data)
	if err != nil {
		return nil, nil, fmt.Errorf("%s", syntaxError(file, err))
	}
	v.Standardize()
	d := &document{file: file, std: v.Pack()}
	obj, ok := v.Value.(*hujson.Object)
	if !ok {
		return nil, nil, fmt.Errorf("%s:%d: want a JSON object at the top", file, d.line(v.StartOffset))
	}
	ms, err := d.members(obj)
	return d, ms, err
}

var hujsonPos = regexp.MustCompile(`^hujson: line (\d+), column (\d+): `)

// syntaxError rewrites the parser's "hujson: line L, column C: msg" as
// "file:L:C: msg".
func syntaxError(file string, err error) string {
	msg := err.Error()
	if m := hujsonPos.FindStringSubmatch(msg); m != nil {
		return fmt.Sprintf("%s:%s:%s: %s", file, m[1], m[2], msg[len(m[0]):])
	}
	return fmt.Sprintf("%s: %s", file, strings.TrimPrefix(msg, "hujson: "))
}

func (d *document) line(offset int) int {
	return 1 + bytes.Count(d.std[:min(offset, len(d.std))], []byte("\n"))
}

func (d *document) members(obj *hujson.Object) ([]member, error) {
	var out []member
	seen := map[string]bool{}
	for _, m := range obj.Members {
		lit, _ := m.Name.Value.(hujson.Literal)
		name := lit.String()
		line := d.line(m.Name.StartOffset)
		if seen[name] {
			return nil, fmt.Errorf("%s:%d: %q is given twice", d.file, line, name)
		}
		seen[name] = true
		out = append(out, member{name: name, line: line, raw: d.std[m.Value.StartOffset:m.Value.EndOffset], val: m.Value})
	}
	return out, nil
}

// decode decodes m's value into v, or says what was wanted where.
func (d *document) decode(m member, key string, v any, want string) error {
	if err := json.Unmarshal(m.raw, v); err != nil {
		return fmt.Errorf("%s:%d: %s: want %s", d.file, m.line, key, want)
	}
	return nil
}

// parser holds what resolving the file's values needs.
type parser struct {
	project string // absolute, links resolved
	dir     string // the devcontainer.json's directory, links resolved
	doc     *document
	cfg     *Config
}

// Parse reads data, the content of the devcontainer.json at file in
// project, and checks every path it names stays inside the project.
func Parse(project, file string, data []byte) (*Config, error) {
	doc, members, err := parseObject(file, data)
	if err != nil {
		return nil, err
	}
	root, err := filepath.EvalSymlinks(project)
	if err != nil {
		return nil, fmt.Errorf("dev container: %w", err)
	}
	dir, err := filepath.EvalSymlinks(filepath.Dir(file))
	if err != nil {
		return nil, fmt.Errorf("dev container: %w", err)
	}
	p := &parser{project: root, dir: dir, doc: doc, cfg: &Config{File: file, Data: data}}
	var (
		build      *member
		legacy     = map[string]*member{}
		setupByKey = map[string]*member{}
	)
	for i := range members {
		m := &members[i]
		switch m.name {
		case "image":
			if err := doc.decode(*m, "image", &p.cfg.Image, "an image reference (a string)"); err != nil {
				return nil, err
			}
			if strings.TrimSpace(p.cfg.Image) == "" {
				return nil, fmt.Errorf("%s:%d: image: empty", file, m.line)
			}
		case "build":
			build = m
		case "dockerFile", "context":
			legacy[m.name] = m
		case "features":
			if err := p.features(*m); err != nil {
				return nil, err
			}
		case "containerEnv", "remoteEnv":
			vars, err := p.env(*m, m.name)
			if err != nil {
				return nil, err
			}
			p.cfg.Env = append(p.cfg.Env, vars...)
		case "onCreateCommand", "updateContentCommand", "postCreateCommand":
			setupByKey[m.name] = m
		case "dockerComposeFile", "service", "runServices":
			return nil, fmt.Errorf("%s:%d: %s: airlock builds the sandbox from an image or a Dockerfile, not a Docker Compose file; name the service's image or Dockerfile in devcontainer.json, or write .airlock/Dockerfile", file, m.line, m.name)
		default:
			why, ok := ignoredKeys[m.name]
			if !ok {
				why = "not a devcontainer.json key airlock knows"
			}
			p.cfg.Ignored = append(p.cfg.Ignored, Ignored{Key: m.name, Line: m.line, Reason: why})
		}
	}
	if err := p.build(build, legacy); err != nil {
		return nil, err
	}
	if (p.cfg.Image == "") == (p.cfg.Build == nil) {
		return nil, fmt.Errorf("%s: name either an image (\"image\") or a Dockerfile (\"build\": {\"dockerfile\": ...}), not both nor neither", file)
	}
	// The specification's order: onCreate, updateContent, postCreate,
	// whatever order the file has them in.
	for _, key := range []string{"onCreateCommand", "updateContentCommand", "postCreateCommand"} {
		if m := setupByKey[key]; m != nil {
			cmds, err := p.lifecycle(doc, *m, key)
			if err != nil {
				return nil, err
			}
			p.cfg.Setup = append(p.cfg.Setup, cmds...)
		}
	}
	return p.cfg, nil
}

// build resolves "build" (or the older top-level dockerFile and context).
func (p *parser) build(m *member, legacy map[string]*member) error {
	file := p.doc.file
	var b struct {
		Dockerfile *string            `json:"dockerfile"`
		Context    *string            `json:"context"`
		Args       map[string]*string `json:"args"`
		Target     *string            `json:"target"`
	}
	line := 0
	if m != nil {
		line = m.line
		obj, ok := m.val.Value.(*hujson.Object)
		if !ok {
			return fmt.Errorf("%s:%d: build: want an object", file, m.line)
		}
		members, err := p.doc.members(obj)
		if err != nil {
			return err
		}
		for _, f := range members {
			key := "build." + f.name
			switch f.name {
			case "dockerfile", "context", "target":
				var s string
				if err := p.doc.decode(f, key, &s, "a string"); err != nil {
					return err
				}
				switch f.name {
				case "dockerfile":
					b.Dockerfile = &s
				case "context":
					b.Context = &s
				case "target":
					b.Target = &s
				}
			case "args":
				if err := p.doc.decode(f, key, &b.Args, "an object of strings"); err != nil {
					return err
				}
			case "options":
				p.cfg.Ignored = append(p.cfg.Ignored, Ignored{Key: key, Line: f.line, Reason: "never applied: build options could give the build the host's network or files"})
			case "cacheFrom":
				p.cfg.Ignored = append(p.cfg.Ignored, Ignored{Key: key, Line: f.line, Reason: "the engine's own cache is used"})
			default:
				p.cfg.Ignored = append(p.cfg.Ignored, Ignored{Key: key, Line: f.line, Reason: "not a build key airlock knows"})
			}
		}
	}
	for name, lm := range legacy {
		var s string
		if err := p.doc.decode(*lm, name, &s, "a string"); err != nil {
			return err
		}
		switch {
		case name == "dockerFile" && b.Dockerfile == nil:
			b.Dockerfile, line = &s, lm.line
		case name == "context" && b.Context == nil:
			b.Context = &s
		}
	}
	if b.Dockerfile == nil {
		if b.Context != nil || b.Args != nil || b.Target != nil {
			return fmt.Errorf("%s:%d: build: no dockerfile", file, line)
		}
		return nil
	}
	if p.cfg.Image != "" {
		return fmt.Errorf("%s:%d: both image and build.dockerfile are given; name one", file, line)
	}
	ctx := "."
	if b.Context != nil {
		ctx = *b.Context
	}
	ctxDir, err := p.inside(ctx, p.project, "the project", "build.context", line)
	if err != nil {
		return err
	}
	if info, err := os.Stat(ctxDir); err != nil || !info.IsDir() {
		return fmt.Errorf("%s:%d: build.context %q: not a directory", file, line, ctx)
	}
	df, err := p.inside(*b.Dockerfile, ctxDir, "the build context", "build.dockerfile", line)
	if err != nil {
		if _, err2 := p.inside(*b.Dockerfile, p.project, "the project", "build.dockerfile", line); err2 == nil {
			return fmt.Errorf("%s:%d: build.dockerfile %q is outside the build context %q; airlock sends the engine only the context", file, line, *b.Dockerfile, ctx)
		}
		return err
	}
	if info, err := os.Stat(df); err != nil || !info.Mode().IsRegular() {
		return fmt.Errorf("%s:%d: build.dockerfile %q: no such file", file, line, *b.Dockerfile)
	}
	rel, _ := filepath.Rel(ctxDir, df)
	out := &Build{Context: ctxDir, Dockerfile: filepath.ToSlash(rel), Args: map[string]string{}}
	for k, v := range b.Args {
		if v == nil {
			continue
		}
		val, err := p.substitute(*v, "build.args."+k, line, false)
		if err != nil {
			return err
		}
		out.Args[k] = val
	}
	if b.Target != nil {
		out.Target = *b.Target
	}
	p.cfg.Build = out
	return nil
}

// inside resolves rel (relative to the devcontainer.json's directory, as
// the specification says) and checks that it stays inside within, links
// followed: the build may not see the host's files.
func (p *parser) inside(rel, within, what, key string, line int) (string, error) {
	if filepath.IsAbs(rel) {
		return "", fmt.Errorf("%s:%d: %s %q: an absolute path; give one relative to %s", p.doc.file, line, key, rel, filepath.Dir(p.doc.file))
	}
	path, err := filepath.EvalSymlinks(filepath.Join(p.dir, rel))
	if err != nil {
		return "", fmt.Errorf("%s:%d: %s %q: %v", p.doc.file, line, key, rel, errors.Unwrap(err))
	}
	r, err := filepath.Rel(within, path)
	if err != nil || r == ".." || strings.HasPrefix(r, ".."+string(filepath.Separator)) {
		return "", fmt.Errorf("%s:%d: %s %q leads to %s, outside %s: the build may not see files outside it", p.doc.file, line, key, rel, path, what)
	}
	return path, nil
}

var envName = regexp.MustCompile(`^[A-Za-z_][A-Za-z0-9_]*$`)

// env resolves an object of environment variables (containerEnv,
// remoteEnv, a feature's containerEnv). A null value (remoteEnv's unset)
// is left out.
func (p *parser) env(m member, key string) ([]Var, error) {
	return p.envIn(p.doc, m, key)
}

func (p *parser) envIn(doc *document, m member, key string) ([]Var, error) {
	obj, ok := m.val.Value.(*hujson.Object)
	if !ok {
		return nil, fmt.Errorf("%s:%d: %s: want an object of strings", doc.file, m.line, key)
	}
	members, err := doc.members(obj)
	if err != nil {
		return nil, err
	}
	secret := agent.AllCredentialNames()
	var out []Var
	for _, v := range members {
		k := key + "." + v.name
		if !envName.MatchString(v.name) {
			return nil, fmt.Errorf("%s:%d: %s: not a variable name", doc.file, v.line, k)
		}
		if slices.Contains(secret, v.name) {
			return nil, fmt.Errorf("%s:%d: %s: an agent's credential is never put in an image; airlock's proxy adds it to the agent's requests", doc.file, v.line, k)
		}
		var s *string
		if err := doc.decode(v, k, &s, "a string"); err != nil {
			return nil, err
		}
		if s == nil {
			continue
		}
		if strings.ContainsAny(*s, "\n\r\x00") {
			return nil, fmt.Errorf("%s:%d: %s: a value may not hold a newline or NUL", doc.file, v.line, k)
		}
		val, err := p.substituteIn(doc, *s, k, v.line, true)
		if err != nil {
			return nil, err
		}
		out = append(out, Var{Name: v.name, Value: val})
	}
	return out, nil
}

var varRef = regexp.MustCompile(`\$\{([^}]*)\}`)

func (p *parser) substitute(s, key string, line int, keepContainerEnv bool) (string, error) {
	return p.substituteIn(p.doc, s, key, line, keepContainerEnv)
}

// substituteIn resolves the specification's ${...} variables in s. The
// host's environment and paths are refused, not copied: the image and the
// sandbox must not carry what the repository's file asked of the host.
// ${containerEnv:NAME} is kept for the image to resolve when keepContainerEnv,
// else (a command line) becomes the shell's ${NAME}.
func (p *parser) substituteIn(doc *document, s, key string, line int, keepContainerEnv bool) (string, error) {
	var err error
	out := varRef.ReplaceAllStringFunc(s, func(ref string) string {
		name := ref[2 : len(ref)-1]
		kind, arg, _ := strings.Cut(name, ":")
		switch {
		case name == "containerWorkspaceFolder":
			return Workspace
		case name == "containerWorkspaceFolderBasename":
			return filepath.Base(Workspace)
		case name == "localWorkspaceFolderBasename":
			return filepath.Base(p.project)
		case kind == "containerEnv":
			n, _, _ := strings.Cut(arg, ":") // a default after a second colon is the shell's, not supported
			if !envName.MatchString(n) || n != arg {
				err = fmt.Errorf("%s:%d: %s: %s: want ${containerEnv:NAME}", doc.file, line, key, ref)
				return ref
			}
			if keepContainerEnv {
				return ref
			}
			return "${" + n + "}"
		case kind == "localEnv" || kind == "env":
			err = fmt.Errorf("%s:%d: %s: %s would copy this machine's environment into the sandbox; airlock does not (set it with [sandbox] env or run --env)", doc.file, line, key, ref)
		case name == "localWorkspaceFolder":
			err = fmt.Errorf("%s:%d: %s: %s is a path on this machine; the sandbox sees the project at %s (${containerWorkspaceFolder})", doc.file, line, key, ref, Workspace)
		default:
			err = fmt.Errorf("%s:%d: %s: %s is not a variable airlock resolves", doc.file, line, key, ref)
		}
		return ref
	})
	return out, err
}

// lifecycle turns a lifecycle command into shell command lines: a string
// is one; an array is one command, its words quoted; an object is one
// command per entry, in file order (the specification runs them in
// parallel; airlock, one after another).
func (p *parser) lifecycle(doc *document, m member, key string) ([]string, error) {
	var cmds []string
	add := func(raw []byte, k string, line int) error {
		var s string
		var argv []string
		switch {
		case json.Unmarshal(raw, &s) == nil:
		case json.Unmarshal(raw, &argv) == nil && len(argv) > 0:
			quoted := make([]string, len(argv))
			for i, a := range argv {
				quoted[i] = shellQuote(a)
			}
			s = strings.Join(quoted, " ")
		default:
			return fmt.Errorf("%s:%d: %s: want a command line, an array of words, or an object of those", doc.file, line, k)
		}
		s, err := p.substituteIn(doc, s, k, line, false)
		if err != nil {
			return err
		}
		if err := prompt.ValidateSetupCommand(s); err != nil {
			return fmt.Errorf("%s:%d: %s: %w", doc.file, line, k, err)
		}
		cmds = append(cmds, s)
		return nil
	}
	if obj, ok := m.val.Value.(*hujson.Object); ok {
		members, err := doc.members(obj)
		if err != nil {
			return nil, err
		}
		for _, c := range members {
			if err := add(c.raw, key+"."+c.name, c.line); err != nil {
				return nil, err
			}
		}
		return cmds, nil
	}
	return cmds, add(m.raw, key, m.line)
}

// shellQuote quotes a word for /bin/sh.
func shellQuote(s string) string {
	if s != "" && strings.Trim(s, "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_-./=:,+@%") == "" {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// features resolves the "features" object: local features only.
func (p *parser) features(m member) error {
	file := p.doc.file
	obj, ok := m.val.Value.(*hujson.Object)
	if !ok {
		return fmt.Errorf("%s:%d: features: want an object", file, m.line)
	}
	members, err := p.doc.members(obj)
	if err != nil {
		return err
	}
	for _, f := range members {
		if !strings.HasPrefix(f.name, "./") {
			return fmt.Errorf("%s:%d: feature %q: airlock runs only local features (\"./path\" under %s): it fetches nothing from registries or URLs, whose content the project does not pin; copy the feature into .devcontainer/ or install the tool in the Dockerfile", file, f.line, f.name, filepath.Dir(file))
		}
		feat, err := p.feature(f)
		if err != nil {
			return err
		}
		p.cfg.Features = append(p.cfg.Features, feat)
	}
	return nil
}

func (p *parser) feature(m member) (Feature, error) {
	file := p.doc.file
	key := "feature " + strconv.Quote(m.name)
	dir, err := p.inside(m.name, p.dir, p.dir, "feature", m.line)
	if err != nil {
		return Feature{}, err
	}
	// The user's options: an object, or a string for the option "version".
	given := map[string]string{}
	var order []string
	switch v := m.val.Value.(type) {
	case *hujson.Object:
		opts, err := p.doc.members(v)
		if err != nil {
			return Feature{}, err
		}
		for _, o := range opts {
			val, err := optionValue(o.raw)
			if err != nil {
				return Feature{}, fmt.Errorf("%s:%d: %s option %s: %v", file, o.line, key, o.name, err)
			}
			given[o.name] = val
			order = append(order, o.name)
		}
	case hujson.Literal:
		if v.Kind() == '"' {
			given["version"] = v.String()
			order = append(order, "version")
		} else if v.Kind() != 't' {
			return Feature{}, fmt.Errorf("%s:%d: %s: want an object of options", file, m.line, key)
		}
	default:
		return Feature{}, fmt.Errorf("%s:%d: %s: want an object of options", file, m.line, key)
	}

	metaPath := filepath.Join(dir, "devcontainer-feature.json")
	data, err := readCapped(metaPath)
	if err != nil {
		return Feature{}, fmt.Errorf("%s:%d: %s: %w", file, m.line, key, err)
	}
	if _, err := os.Lstat(filepath.Join(dir, "install.sh")); err != nil {
		return Feature{}, fmt.Errorf("%s:%d: %s: no install.sh in %s", file, m.line, key, dir)
	}
	doc, members, err := parseObject(metaPath, data)
	if err != nil {
		return Feature{}, err
	}
	feat := Feature{ID: m.name}
	defaults := map[string]string{}
	var defOrder []string
	for _, fm := range members {
		fkey := m.name + ": " + fm.name
		switch fm.name {
		case "options":
			var opts map[string]struct {
				Default json.RawMessage `json:"default"`
			}
			if err := doc.decode(fm, "options", &opts, "an object of options"); err != nil {
				return Feature{}, err
			}
			for name, o := range opts {
				if o.Default == nil {
					continue
				}
				val, err := optionValue(o.Default)
				if err != nil {
					return Feature{}, fmt.Errorf("%s:%d: options.%s.default: %v", metaPath, fm.line, name, err)
				}
				defaults[name] = val
				defOrder = append(defOrder, name)
			}
		case "containerEnv":
			vars, err := p.envIn(doc, fm, "containerEnv")
			if err != nil {
				return Feature{}, err
			}
			feat.Env = vars
		case "onCreateCommand", "updateContentCommand", "postCreateCommand":
			cmds, err := p.lifecycle(doc, fm, fm.name)
			if err != nil {
				return Feature{}, err
			}
			p.cfg.Setup = append(p.cfg.Setup, cmds...)
		case "dependsOn":
			return Feature{}, fmt.Errorf("%s:%d: dependsOn: airlock does not fetch the features a feature depends on; list them in devcontainer.json (local ones) or install them in the Dockerfile", metaPath, fm.line)
		case "id", "version", "name", "description", "documentationURL", "licenseURL", "keywords", "installsAfter", "legacyIds", "deprecated", "customizations":
		case "mounts", "privileged", "capAdd", "securityOpt", "entrypoint":
			p.cfg.Ignored = append(p.cfg.Ignored, Ignored{Key: "features." + fkey, Line: fm.line, Reason: whyHost})
		case "init":
			p.cfg.Ignored = append(p.cfg.Ignored, Ignored{Key: "features." + fkey, Line: fm.line, Reason: ignoredKeys["init"]})
		default:
			why, ok := ignoredKeys[fm.name]
			if !ok {
				why = "not a devcontainer-feature.json key airlock knows"
			}
			p.cfg.Ignored = append(p.cfg.Ignored, Ignored{Key: "features." + fkey, Line: fm.line, Reason: why})
		}
	}
	slices.Sort(defOrder)
	for _, name := range defOrder {
		if _, ok := given[name]; !ok {
			feat.Options = append(feat.Options, Var{Name: optionEnvName(name), Value: defaults[name]})
		}
	}
	for _, name := range order {
		feat.Options = append(feat.Options, Var{Name: optionEnvName(name), Value: given[name]})
	}
	if feat.Files, feat.Exec, err = readFeature(dir); err != nil {
		return Feature{}, fmt.Errorf("%s:%d: %s: %w", file, m.line, key, err)
	}
	return feat, nil
}

// optionValue is an option's value as its environment variable holds it.
func optionValue(raw []byte) (string, error) {
	var v any
	if err := json.Unmarshal(raw, &v); err != nil {
		return "", err
	}
	switch v := v.(type) {
	case string:
		if strings.ContainsRune(v, 0) {
			return "", errors.New("holds a NUL byte")
		}
		return v, nil
	case bool:
		return strconv.FormatBool(v), nil
	case float64:
		return string(raw), nil
	}
	return "", errors.New("want a string, a boolean or a number")
}

var nonWord = regexp.MustCompile(`[^A-Za-z0-9_]`)
var leadingDigits = regexp.MustCompile(`^[0-9_]+`)

// optionEnvName is the specification's variable name for an option:
// non-word characters as "_", leading digits and underscores as one "_",
// upper-cased.
func optionEnvName(name string) string {
	return strings.ToUpper(leadingDigits.ReplaceAllString(nonWord.ReplaceAllString(name, "_"), "_"))
}

// readFeature reads a feature's files. A link is refused: its target
// could be anywhere on the host.
func readFeature(dir string) (map[string][]byte, []string, error) {
	files := map[string][]byte{}
	var exec []string
	total := 0
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, path)
		rel = filepath.ToSlash(rel)
		info, err := d.Info()
		if err != nil {
			return err
		}
		switch {
		case info.IsDir():
			return nil
		case info.Mode()&fs.ModeSymlink != 0:
			return fmt.Errorf("%s is a symbolic link; a feature's files must be plain files", rel)
		case !info.Mode().IsRegular():
			return fmt.Errorf("%s is not a regular file", rel)
		}
		if total += int(info.Size()); total > maxFeature {
			return fmt.Errorf("its files are larger than %d bytes together", maxFeature)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		files[rel] = data
		if info.Mode()&0o111 != 0 || rel == "install.sh" {
			exec = append(exec, rel)
		}
		return nil
	})
	return files, exec, err
}
