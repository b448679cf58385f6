package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/image"
	"github.com/airlock-dev/airlock/internal/sandbox"
)

type imageBuildOptions struct {
	Base          string
	ClaudeVersion string
}

func newImageCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "image",
		Short: "Build the agent image",
	}
	var opts imageBuildOptions
	build := &cobra.Command{
		Use:   "build",
		Short: "Build the default agent image (and the project's, if it has .airlock/Dockerfile)",
		Long: `Build the default agent image: a Debian base, git, Node.js, Claude Code at the
pinned version, the tools agents reach for, a non-root user and an init.

The base is [image] base (default debian:bookworm-slim), or "bootstrap": made
from Debian packages with debootstrap, for machines that reach no image
registry (needs root and debootstrap). Extra CA certificates ([image]
ca_certificates; "host" is this machine's bundle) are trusted during the build
and inside the sandbox. The tag is a hash of the inputs: an unchanged image is
not rebuilt.

A project's .airlock/Dockerfile is built on top (ARG AIRLOCK_BASE, then
FROM ${AIRLOCK_BASE}); its build context is .airlock/.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return imageBuildRun(cmd.Context(), f, opts, cmd.Flags().Changed("base"), cmd.Flags().Changed("claude-version"))
		},
	}
	build.Flags().StringVar(&opts.Base, "base", "", `base image, or "bootstrap" (default from config)`)
	build.Flags().StringVar(&opts.ClaudeVersion, "claude-version", "", "Claude Code version (default from config)")
	cmd.AddCommand(build)
	return cmd
}

func imageBuildRun(ctx context.Context, f *Factory, opts imageBuildOptions, baseSet, versionSet bool) error {
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
	spec, err := imageSpec(res)
	if err != nil {
		return err
	}
	eng, err := f.imageEngine(ctx)
	if err != nil {
		return err
	}
	ref, err := image.Build(ctx, eng, spec, f.IO.ErrOut)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "Default image: %s\n", ref)
	if dir := projectDockerfileDir(project); dir != "" {
		pref, err := image.BuildProject(ctx, eng, ref, dir, f.IO.ErrOut)
		if err != nil {
			return err
		}
		fmt.Fprintf(f.IO.ErrOut, "Project image: %s\n", pref)
		ref = pref
	}
	fmt.Fprintln(f.IO.Out, ref)
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
	spec := image.Spec{Base: cfg.Image.Base, ClaudeVersion: cfg.Agent.Claude.Version}
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
	if res.Config.Image.Name != "" {
		return res.Config.Image.Name, nil
	}
	spec, err := imageSpec(res)
	if err != nil {
		return "", err
	}
	ref := image.DefaultRef(spec)
	if dir := projectDockerfileDir(project); dir != "" {
		return image.ProjectRef(ref, dir)
	}
	return ref, nil
}

// loadConfig resolves the configuration layers for a project ("" outside one).
func (f *Factory) loadConfig(project string) (*config.Resolved, error) {
	return config.DefaultPaths(project, f.Getenv).Load()
}
