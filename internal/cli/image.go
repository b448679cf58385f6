package cli

import (
	"context"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/devcontainer"
	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

type imageBuildOptions struct {
	Base          string
	Agent         string
	ClaudeVersion string
	NoPush        bool
}

func newImageCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build, list and prune the agent images",
	}
	var opts imageBuildOptions
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the agent's image (on the project's .airlock/Dockerfile or dev container, if it has one)",
		Long: `Build the default image of the configured agent ([agent] name, or --agent;
--agent all builds every agent's): a Debian base, git, Node.js, the agent's CLI
at its pinned version ([agent.NAME] version), the tools agents reach for, a
non-root user and an init. Each agent has its own image, airlock-NAME; they
share every layer below the agent's own.

The base is [image] base (default debian:bookworm-slim), or "bootstrap": made
from Debian packages with debootstrap, for machines that reach no image
registry (needs root and debootstrap). Extra CA certificates ([image]
ca_certificates; "host" is this machine's bundle) are trusted during the build
and inside the sandbox. The tag is a hash of the inputs: an unchanged image is
not rebuilt.

A project's .airlock/Dockerfile is built on top (ARG AIRLOCK_BASE, then
FROM ${AIRLOCK_BASE}); its build context is .airlock/.

Without one, a project's dev container (.devcontainer/devcontainer.json) is
the base instead: its "image", or the image built from its build.dockerfile,
context and args (.dockerignore honoured; the repository's .git and
.airlock/env are never sent); then airlock's layers (the tools above, the
agent user), its local features ("./path", run as root), its containerEnv and
remoteEnv, and the agent's CLI. Its onCreateCommand, updateContentCommand and
postCreateCommand run in each sandbox before the agent, as setup commands.
Keys that would reach the host (mounts, runArgs, privileged, capAdd,
initializeCommand ...) are never applied; the build lists what it ignores.

With the kubernetes engine the image is built on this machine's engine (the
one airlock detects: DOCKER_HOST, Docker's socket, then Podman's). With
[engine.kubernetes] registry set it is then pushed there as
REGISTRY/IMAGE:TAG, the reference pods pull, with your credentials for that
registry from docker login or podman login (none: anonymously); --no-push
skips that. Without a registry, load the image into the cluster's nodes
(docs/kubernetes.md, "Images").`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return imageBuildRun(cmd.Context(), f, opts, cmd.Flags().Changed("base"), cmd.Flags().Changed("claude-version"), cmd.Flags().Changed("agent"))
		},
	}
	build.Flags().StringVar(&opts.Base, "base", "", `base image, or "bootstrap" (default from config)`)
	build.Flags().StringVar(&opts.Agent, "agent", "", "the agent whose image to build: "+strings.Join(agent.Names(), ", ")+", or all (default from config)")
	build.Flags().StringVar(&opts.ClaudeVersion, "claude-version", "", "Claude Code version (default from config)")
	build.Flags().BoolVar(&opts.NoPush, "no-push", false, "kubernetes engine: build only, do not push to [engine.kubernetes] registry")
	cmd.AddCommand(build, newImageLsCmd(f), newImagePruneCmd(f))
	return cmd
}

func newImageLsCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List airlock's images on the engine",
		Long: `List the images airlock made on the engine: default agent images
(airlock-claude, airlock-codex, ...), their bootstrapped bases (airlock-base) and project images
(airlock-project-*), newest first, one line per reference. USE says which
this project's runs use now ("current"), which is the latest default image,
and which base the current default image is built on.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return imageLsRun(cmd.Context(), f) },
	}
}

func newImagePruneCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "prune",
		Short: "Remove superseded airlock images",
		Long: `Remove the default agent images and bootstrapped bases that the current
configuration no longer uses, and this project's superseded project images.
Kept: every agent's current default image and its :latest, the base they are
built on, and this project's current images. Other projects' images are left alone.
On Docker and Podman an image a container still uses is kept (said so); on
Incus every instance has its own copy, so nothing is in use.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error { return imagePruneRun(cmd.Context(), f) },
	}
}

// imageStore is the engine, answering and able to list and remove images.
func (f *Factory) imageStore(ctx context.Context) (image.Store, error) {
	if _, err := f.PingedEngine(ctx); err != nil {
		return nil, err
	}
	if f.caps.Images == nil {
		return nil, f.caps.Missing("list or remove images")
	}
	return f.caps.Images, nil
}

// imageKeep is what this project's runs use and build on now: the
// references image ls marks and prune keeps, with what each is.
func (f *Factory) imageKeep(ctx context.Context) (keep map[string]string, projectDir string, err error) {
	project, _ := f.project(ctx)
	res, err := f.loadConfig(project)
	if err != nil {
		return nil, "", err
	}
	spec, err := imageSpec(res)
	if err != nil {
		return nil, "", err
	}
	ref, err := f.imageRef(project, res)
	if err != nil {
		return nil, "", err
	}
	src, err := loadProjectImage(project)
	if err != nil {
		return nil, "", err
	}
	projectDir = src.pruneDir()
	keep = map[string]string{}
	for _, a := range agent.All() {
		spec := spec
		spec.Agent, spec.Version = a, res.Config.Agent.CLI[a.Name()].Version
		projectRef := ""
		if src.dir != "" || src.dev != nil {
			if projectRef, err = src.ref(spec); err != nil {
				return nil, "", err
			}
		}
		for i, r := range image.Keep(spec, projectRef) {
			if keep[r] == "" {
				keep[r] = [...]string{"default", "latest", "base", "project"}[i]
			}
		}
		if src.dev != nil {
			base, err := image.DevBaseRef(project, src.dev)
			if err != nil {
				return nil, "", err
			}
			if keep[base] == "" {
				keep[base] = "devcontainer"
			}
		}
	}
	keep[ref] = "current"
	return keep, projectDir, nil
}

func imageLsRun(ctx context.Context, f *Factory) error {
	st, err := f.imageStore(ctx)
	if err != nil {
		return err
	}
	keep, _, err := f.imageKeep(ctx)
	if err != nil {
		return err
	}
	imgs, err := image.List(ctx, st)
	if err != nil {
		return err
	}
	now := f.Now()
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "REFERENCE\tID\tSIZE\tCREATED\tUSE")
	for _, img := range imgs {
		for _, r := range img.Refs {
			fmt.Fprintf(tw, "%s\t%.12s\t%s\t%s\t%s\n", r, img.ID, byteSize(img.Size), age(now.Sub(img.Created)), keep[r])
		}
	}
	return tw.Flush()
}

func imagePruneRun(ctx context.Context, f *Factory) error {
	st, err := f.imageStore(ctx)
	if err != nil {
		return err
	}
	keep, projectDir, err := f.imageKeep(ctx)
	if err != nil {
		return err
	}
	refs := make([]string, 0, len(keep))
	for r := range keep {
		refs = append(refs, r)
	}
	scope, err := image.PruneScope(projectDir)
	if err != nil {
		return err
	}
	res, err := image.Prune(ctx, st, scope, refs)
	for _, r := range res.Removed {
		fmt.Fprintf(f.IO.Out, "removed %s\n", r)
	}
	for _, r := range res.InUse {
		fmt.Fprintf(f.IO.ErrOut, "kept %s: a container uses it (airlock clean or airlock rm removes airlock's)\n", r)
	}
	if err != nil {
		return err
	}
	if len(res.Removed) == 0 {
		fmt.Fprintln(f.IO.ErrOut, "nothing to prune")
	}
	return nil
}

// byteSize renders a size for a table, in decimal units as docker images
// does.
func byteSize(n int64) string {
	switch {
	case n >= 1e9:
		return fmt.Sprintf("%.1fGB", float64(n)/1e9)
	case n >= 1e6:
		return fmt.Sprintf("%.0fMB", float64(n)/1e6)
	case n >= 1e3:
		return fmt.Sprintf("%.0fkB", float64(n)/1e3)
	}
	return fmt.Sprintf("%dB", n)
}

func imageBuildRun(ctx context.Context, f *Factory, opts imageBuildOptions, baseSet, versionSet, agentSet bool) error {
	project, _ := f.project(ctx) // outside a repository only the default image is built
	res, err := f.loadConfig(project)
	if err != nil {
		return err
	}
	if baseSet {
		if err := res.Set("image.base", opts.Base, "flag --base"); err != nil {
			return err
		}
	}
	if versionSet {
		if err := res.Set("agent.claude.version", opts.ClaudeVersion, "flag --claude-version"); err != nil {
			return err
		}
	}
	agents := []string{res.Config.Agent.Name}
	switch {
	case agentSet && opts.Agent == "all":
		agents = agent.Names()
	case agentSet:
		if err := res.Set("agent.name", opts.Agent, "flag --agent"); err != nil {
			return flagErrorf("%v", err)
		}
		agents = []string{opts.Agent}
	}
	src, err := loadProjectImage(project)
	if err != nil {
		return err
	}
	if src.dev != nil {
		fmt.Fprintf(f.IO.ErrOut, "Dev container: %s\n", src.dev.File)
		for _, ig := range src.dev.Ignored {
			if !ig.Quiet() {
				fmt.Fprintf(f.IO.ErrOut, "  not applied: %s\n", ig)
			}
		}
		if len(src.dev.Setup) > 0 {
			fmt.Fprintf(f.IO.ErrOut, "  run in each sandbox before the agent: %s\n", strings.Join(src.dev.Setup, "; "))
		}
	}
	b, err := f.imageBuilder(ctx, res)
	if err != nil {
		return err
	}
	defer b.close()
	if opts.NoPush && !b.kube {
		return flagErrorf("--no-push: images are pushed only for the kubernetes engine, and this one is %s", b.kind)
	}
	eng := b.eng
	for _, name := range agents {
		if err := res.Set("agent.name", name, "flag --agent"); err != nil {
			return err
		}
		spec, err := imageSpec(res)
		if err != nil {
			return err
		}
		ref, err := src.build(ctx, eng, spec, f.IO.ErrOut)
		if err != nil {
			return err
		}
		if b.kube {
			if err := b.pushOrSay(ctx, f.IO.ErrOut, ref, opts.NoPush); err != nil {
				return err
			}
		}
		fmt.Fprintln(f.IO.Out, ref)
	}
	return nil
}

// imageEngine is the engine, answering and able to build and import images.
func (f *Factory) imageEngine(ctx context.Context) (image.Engine, error) {
	eng, err := f.PingedEngine(ctx)
	if err != nil {
		return nil, err
	}
	caps := f.caps
	switch {
	case caps.Build == nil:
		return nil, caps.Missing("build images")
	case caps.Import == nil:
		return nil, caps.Missing("import images")
	}
	return imageEngine{Engine: eng, ImageBuilder: caps.Build, ImageImporter: caps.Import}, nil
}

// imageEngine joins an engine's image capabilities into what image needs.
type imageEngine struct {
	sandbox.Engine
	sandbox.ImageBuilder
	sandbox.ImageImporter
}

// imageSpec turns configuration into build inputs, reading the CA files.
// The default entry, the host's bundle, is skipped on hosts that lack it;
// a file the user listed must exist.
func imageSpec(res *config.Resolved) (image.Spec, error) {
	cfg := res.Config
	a, err := agent.Lookup(cfg.Agent.Name)
	if err != nil {
		return image.Spec{}, err
	}
	spec := image.Spec{Base: cfg.Image.Base, Agent: a, Version: cfg.Agent.Selected().Version}
	from := res.From("image.ca_certificates")
	for _, path := range cfg.Image.CACertificates {
		pem, err := os.ReadFile(path)
		if os.IsNotExist(err) && from == config.FromDefault {
			continue
		}
		if err != nil {
			return image.Spec{}, fmt.Errorf("image.ca_certificates (%s): %w", from, err)
		}
		spec.CACerts = append(spec.CACerts, pem)
	}
	return spec, nil
}

// projectDockerfileDir is the project's .airlock directory if it holds a
// Dockerfile.
func projectDockerfileDir(project string) string {
	if project == "" {
		return ""
	}
	dir := filepath.Join(project, ".airlock")
	if _, err := os.Stat(filepath.Join(dir, "Dockerfile")); err != nil {
		return ""
	}
	return dir
}

// imageRef is the image a run uses: [image] name if set, else the default
// image (or the project's) built from the configured inputs.
func (f *Factory) imageRef(project string, res *config.Resolved) (string, error) {
	ref, _, err := f.runImage(project, res)
	return ref, err
}

// runImage is imageRef, with the project's dev container when the image
// is built on it (its setup commands are the run's too).
func (f *Factory) runImage(project string, res *config.Resolved) (string, *devcontainer.Config, error) {
	if res.Config.Image.Name != "" {
		return res.Config.Image.Name, nil, nil
	}
	spec, err := imageSpec(res)
	if err != nil {
		return "", nil, err
	}
	src, err := loadProjectImage(project)
	if err != nil {
		return "", nil, err
	}
	ref, err := src.ref(spec)
	return ref, src.dev, err
}

// projectImage is where a project's own images come from: its
// .airlock/Dockerfile, built on the default image; else its dev container
// (.devcontainer/devcontainer.json), with airlock's layers on top; else
// nowhere, and runs use the default image.
type projectImage struct {
	project string
	dir     string               // the .airlock directory, when it holds a Dockerfile
	dev     *devcontainer.Config // the dev container, when there is no .airlock/Dockerfile
}

func loadProjectImage(project string) (projectImage, error) {
	if project == "" {
		return projectImage{}, nil
	}
	if dir := projectDockerfileDir(project); dir != "" {
		return projectImage{project: project, dir: dir}, nil
	}
	dc, err := devcontainer.Load(project)
	if err != nil {
		return projectImage{}, err
	}
	return projectImage{project: project, dev: dc}, nil
}

// ref is the image runs of spec's agent use.
func (p projectImage) ref(spec image.Spec) (string, error) {
	switch {
	case p.dir != "":
		return image.ProjectRef(image.DefaultRef(spec), p.dir)
	case p.dev != nil:
		return image.DevRef(spec, p.project, p.dev)
	}
	return image.DefaultRef(spec), nil
}

// pruneDir is the directory whose project images prune looks at: the
// project's .airlock (its images are named after the project), "" none.
func (p projectImage) pruneDir() string {
	switch {
	case p.dir != "":
		return p.dir
	case p.dev != nil:
		return filepath.Join(p.project, ".airlock")
	}
	return ""
}

// build makes sure the image runs of spec's agent use exists.
func (p projectImage) build(ctx context.Context, eng image.Engine, spec image.Spec, progress io.Writer) (string, error) {
	if p.dev != nil {
		ref, err := image.BuildDevcontainer(ctx, eng, spec, p.project, p.dev, progress)
		if err != nil {
			return "", err
		}
		fmt.Fprintf(progress, "Agent image on the dev container: %s\n", ref)
		return ref, nil
	}
	ref, err := image.Build(ctx, eng, spec, progress)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "Default image: %s\n", ref)
	if p.dir == "" {
		return ref, nil
	}
	pref, err := image.BuildProject(ctx, eng, ref, p.dir, progress)
	if err != nil {
		return "", err
	}
	fmt.Fprintf(progress, "Project image: %s\n", pref)
	return pref, nil
}

// loadConfig resolves the configuration layers for a project ("" outside one).
func (f *Factory) loadConfig(project string) (*config.Resolved, error) {
	return config.DefaultPaths(project, f.Getenv).Load()
}
