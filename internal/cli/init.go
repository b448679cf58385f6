package cli

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/config"
)

func newInitCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "init",
		Short: "Set up airlock in this repository",
		Long: `Create .airlock/config.toml (every setting, commented out), an example prompt
.airlock/prompts/example.md, and .airlock/.gitignore (keeps the env file and
local overrides out of git). Existing files are left alone.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return initRun(cmd.Context(), f)
		},
	}
}

const examplePrompt = `---
# Everything in this block is optional.
# name: example          # run name (default: the file name)
# branch: main           # base branch (default: your current branch)
# model: claude-sonnet-4-5
# max_turns: 30
# env: [GOFLAGS=-mod=mod]
---
Read the README and the code, then improve the README where it is unclear or
out of date. Keep the changes small and commit them with a clear message.
`

const airlockGitignore = `# Local to this machine: never commit these.
env
*.local.toml
`

func initRun(ctx context.Context, f *Factory) error {
	project, err := f.project(ctx)
	if err != nil {
		return err
	}
	dir := filepath.Join(project, ".airlock")
	files := []struct{ path, content string }{
		{filepath.Join(dir, "config.toml"), config.ProjectTemplate()},
		{filepath.Join(dir, "prompts", "example.md"), examplePrompt},
		{filepath.Join(dir, ".gitignore"), airlockGitignore},
	}
	for _, file := range files {
		rel, _ := filepath.Rel(project, file.path)
		if err := os.MkdirAll(filepath.Dir(file.path), 0o755); err != nil {
			return fmt.Errorf("init: %w", err)
		}
		fh, err := os.OpenFile(file.path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if errors.Is(err, os.ErrExist) {
			fmt.Fprintf(f.IO.ErrOut, "  exists   %s (left alone)\n", rel)
			continue
		}
		if err != nil {
			return fmt.Errorf("init: %w", err)
		}
		_, werr := fh.WriteString(file.content)
		if cerr := fh.Close(); werr == nil {
			werr = cerr
		}
		if werr != nil {
			return fmt.Errorf("init: write %s: %w", rel, werr)
		}
		fmt.Fprintf(f.IO.ErrOut, "  created  %s\n", rel)
	}
	fmt.Fprintln(f.IO.ErrOut, "\nNext: `airlock image build`, then `airlock run example`.")
	return nil
}
