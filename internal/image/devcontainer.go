package image

import (
	"context"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/moby/patternmatcher"
	"github.com/moby/patternmatcher/ignorefile"

	"github.com/airlock-dev/airlock/internal/devcontainer"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

// A project with a dev container (.devcontainer/devcontainer.json) and no
// .airlock/Dockerfile gets agent images built on the dev container's
// image: its "image", or one built from its Dockerfile and context (tagged
// airlock-project-NAME:devcontainer-HASH). airlock's own layers go on top,
// as on the default base: CA trust, the tools (git, Node.js, tini, tmux
// ...), the agent user, the local features, the container's environment,
// then the agent's CLI: airlock-project-NAME:AGENT-HASH. The hashes cover
// every build input, so an unchanged project is not rebuilt.

// DevBaseRef returns the base image of the project's dev container: the
// image dc names, or the tag BuildDevcontainer gives the image built from
// its Dockerfile.
func DevBaseRef(project string, dc *devcontainer.Config) (string, error) {
	if dc.Build == nil {
		return dc.Image, nil
	}
	skip, err := devContextSkip(project, dc.Build)
	if err != nil {
		return "", err
	}
	h := newHasher()
	h.field("dockerfile", []byte(dc.Build.Dockerfile))
	h.field("target", []byte(dc.Build.Target))
	args := make([]string, 0, len(dc.Build.Args))
	for k := range dc.Build.Args {
		args = append(args, k)
	}
	sort.Strings(args)
	for _, k := range args {
		h.field("arg", []byte(k))
		h.field("value", []byte(dc.Build.Args[k]))
	}
	if err := hashDir(h, dc.Build.Context, skip); err != nil {
		return "", fmt.Errorf("dev container build context %s: %w", dc.Build.Context, err)
	}
	return devRepo(project) + ":devcontainer-" + h.sum(), nil
}

func devRepo(project string) string {
	return ProjectRepoPrefix + sanitizeName(filepath.Base(project))
}

// DevRef returns the tag BuildDevcontainer gives spec's agent image on the
// project's dev container, without building anything.
func DevRef(spec Spec, project string, dc *devcontainer.Config) (string, error) {
	spec, err := devSpec(spec, project, dc)
	if err != nil {
		return "", err
	}
	return devRef(spec, project), nil
}

func devSpec(spec Spec, project string, dc *devcontainer.Config) (Spec, error) {
	spec = spec.withDefaults()
	base, err := DevBaseRef(project, dc)
	if err != nil {
		return Spec{}, err
	}
	spec.Base, spec.Mirror, spec.dev = base, "", dc
	return spec, nil
}

func devRef(spec Spec, project string) string {
	h := newHasher()
	h.field("base", []byte(spec.baseRef()))
	h.field(spec.Agent.Name(), []byte(spec.Version))
	files := devContextFiles(spec)
	names := make([]string, 0, len(files))
	for n := range files {
		names = append(names, n)
	}
	sort.Strings(names)
	for _, n := range names {
		h.field(n, files[n])
	}
	return devRepo(project) + ":" + spec.Agent.Name() + "-" + h.sum()
}

// BuildDevcontainer makes sure spec's agent image on the project's dev
// container exists, building the dev container's own image first when it
// is built from a Dockerfile, and returns its tag.
func BuildDevcontainer(ctx context.Context, eng Engine, spec Spec, project string, dc *devcontainer.Config, progress io.Writer) (string, error) {
	spec, err := devSpec(spec, project, dc)
	if err != nil {
		return "", err
	}
	if dc.Build != nil {
		if err := buildDevBase(ctx, eng, spec.Base, project, dc, progress); err != nil {
			return "", err
		}
	}
	ref := devRef(spec, project)
	ok, err := eng.ImageExists(ctx, ref)
	if err != nil {
		return "", fmt.Errorf("build image %s: %w", ref, err)
	}
	if ok {
		return ref, nil
	}
	if progress != nil {
		fmt.Fprintf(progress, "Building %s (%s %s on the dev container %s)\n", ref, spec.Agent.Title(), spec.Version, spec.Base)
	}
	start := time.Now()
	err = eng.BuildImage(ctx, sandbox.BuildRequest{Files: devContextFiles(spec), Tags: []string{ref}, Progress: progress})
	if err != nil {
		return "", fmt.Errorf("agent image on the dev container (%s): %w", dc.File, err)
	}
	if progress != nil {
		fmt.Fprintf(progress, "Agent image %s: built in %.1f s\n", ref, time.Since(start).Seconds())
	}
	return ref, nil
}

func buildDevBase(ctx context.Context, eng Engine, ref, project string, dc *devcontainer.Config, progress io.Writer) error {
	ok, err := eng.ImageExists(ctx, ref)
	if err != nil {
		return fmt.Errorf("build image %s: %w", ref, err)
	}
	if ok {
		return nil
	}
	skip, err := devContextSkip(project, dc.Build)
	if err != nil {
		return err
	}
	if progress != nil {
		fmt.Fprintf(progress, "Building the dev container %s from %s (context %s)\n", ref, filepath.Join(dc.Build.Context, dc.Build.Dockerfile), dc.Build.Context)
	}
	err = eng.BuildImage(ctx, sandbox.BuildRequest{
		ContextDir: dc.Build.Context,
		Skip:       skip,
		Dockerfile: dc.Build.Dockerfile,
		BuildArgs:  dc.Build.Args,
		Target:     dc.Build.Target,
		Tags:       []string{ref},
		Progress:   progress,
	})
	if err != nil {
		return fmt.Errorf("dev container image from %s: %w", dc.File, err)
	}
	return nil
}

// devContextSkip says which files of the dev container's build context
// the engine is not sent: those its .dockerignore names (as the docker
// CLI does), and, whatever it says, the repository's .git and airlock's
// private files (.airlock/env may hold secrets).
func devContextSkip(project string, b *devcontainer.Build) (func(rel string) bool, error) {
	root, err := filepath.EvalSymlinks(project)
	if err != nil {
		return nil, fmt.Errorf("dev container: %w", err)
	}
	prefix, err := filepath.Rel(root, b.Context)
	if err != nil {
		return nil, fmt.Errorf("dev container: %w", err)
	}
	prefix = filepath.ToSlash(prefix)
	var pm *patternmatcher.PatternMatcher
	for _, name := range []string{b.Dockerfile + ".dockerignore", ".dockerignore"} {
		f, err := os.Open(filepath.Join(b.Context, filepath.FromSlash(name)))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("dev container: %w", err)
		}
		patterns, err := ignorefile.ReadAll(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("dev container: %s: %w", name, err)
		}
		if pm, err = patternmatcher.New(patterns); err != nil {
			return nil, fmt.Errorf("dev container: %s: %w", name, err)
		}
		break
	}
	return func(rel string) bool {
		if rel == b.Dockerfile || rel == ".dockerignore" || rel == b.Dockerfile+".dockerignore" {
			return false
		}
		p := path.Join(prefix, rel)
		if p == ".git" || p == ".airlock/env" || strings.HasPrefix(p, ".airlock/") && strings.HasSuffix(p, ".local.toml") {
			return true
		}
		if pm == nil {
			return false
		}
		m, _ := pm.MatchesOrParentMatches(rel)
		// A matched directory is left out whole only when no "!" pattern
		// could bring back something under it.
		if m && pm.Exclusions() {
			info, err := os.Lstat(filepath.Join(b.Context, filepath.FromSlash(rel)))
			return err == nil && !info.IsDir()
		}
		return m
	}, nil
}

// featureDir is where a feature's files are in the build context.
func featureDir(i int) string { return fmt.Sprintf("features/%02d", i) }

// devContextFiles is the in-memory context of an agent image on a dev
// container: the default image's, and each feature's files with the
// environment file its install script reads.
func devContextFiles(spec Spec) map[string][]byte {
	files := contextFiles(spec)
	for i, f := range spec.dev.Features {
		for rel, data := range f.Files {
			files[featureDir(i)+"/"+rel] = data
		}
		var env strings.Builder
		for _, v := range featureBuiltins {
			fmt.Fprintf(&env, "%s=%s\n", v.Name, shellQuote(v.Value))
		}
		for _, v := range f.Options {
			fmt.Fprintf(&env, "%s=%s\n", v.Name, shellQuote(v.Value))
		}
		files[featureDir(i)+"/devcontainer-features.env"] = []byte(env.String())
	}
	return files
}

// featureBuiltins are the variables the specification gives every
// feature's install script: the user the tools are for.
var featureBuiltins = []devcontainer.Var{
	{Name: "_REMOTE_USER", Value: "agent"}, {Name: "_REMOTE_USER_HOME", Value: "/home/agent"},
	{Name: "_CONTAINER_USER", Value: "root"}, {Name: "_CONTAINER_USER_HOME", Value: "/root"},
}

// devLayers writes the dev container's part of the agent image: the
// agent user (uid 1000, beside any user the image has with that uid), the
// features, each run as root from its directory with its options in the
// environment, and the container's environment.
func devLayers(w func(string, ...any), dc *devcontainer.Config) {
	w(`RUN set -eu; \`)
	w(`    getent group 1000 >/dev/null || groupadd --gid 1000 agent; \`)
	w(`    id -u agent >/dev/null 2>&1 || useradd --non-unique --uid 1000 --gid 1000 --create-home --home-dir /home/agent --shell /bin/bash agent; \`)
	w(`    mkdir -p /home/agent /workspace /opt/agent/bin /opt/agent/lib; \`)
	w(`    chown 1000:1000 /home/agent /workspace; \`)
	w(`    chmod 1777 /opt/agent /opt/agent/bin /opt/agent/lib`)
	for i, f := range dc.Features {
		dir := "/tmp/airlock-" + strings.ReplaceAll(featureDir(i), "/", "-")
		exec := make([]string, len(f.Exec))
		for j, e := range f.Exec {
			exec[j] = shellQuote(e)
		}
		sort.Strings(exec)
		w("# feature %q", f.ID)
		w("COPY %s/ %s/", featureDir(i), dir)
		w(`RUN set -eu; cd %s; chmod +x %s; \`, dir, strings.Join(exec, " "))
		w(`    set -a; . ./devcontainer-features.env; set +a; \`)
		w(`    ./install.sh; cd /; rm -rf %s`, dir)
		for _, v := range f.Env {
			w("%s", envLine(v))
		}
	}
	for _, v := range dc.Env {
		w("%s", envLine(v))
	}
}

// envLine is a Dockerfile ENV instruction setting v: ${containerEnv:NAME}
// becomes the Dockerfile's ${NAME} (the base image's value); everything
// else is literal.
func envLine(v devcontainer.Var) string {
	var b strings.Builder
	s := v.Value
	for len(s) > 0 {
		if strings.HasPrefix(s, "${containerEnv:") {
			if end := strings.IndexByte(s, '}'); end > 0 {
				b.WriteString("${" + s[len("${containerEnv:"):end] + "}")
				s = s[end+1:]
				continue
			}
		}
		switch c := s[0]; c {
		case '\\', '"', '$':
			b.WriteByte('\\')
			b.WriteByte(c)
		default:
			b.WriteByte(c)
		}
		s = s[1:]
	}
	return fmt.Sprintf("ENV %s=\"%s\"", v.Name, b.String())
}

// shellQuote quotes s for /bin/sh.
func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
