package cli

import (
	"context"
	"path/filepath"
	"strings"

	"github.com/airlock-dev/airlock/internal/untrusted"
	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/workspace"
)

type diffOptions struct {
	Stat        bool
	NameOnly    bool
	AllProjects bool
}

func newDiffCmd(f *Factory) *cobra.Command {
	var opts diffOptions
	cmd := &cobra.Command{
		Use:   "diff [RUN] [-- PATH...]",
		Short: "Show what a run changed, uncommitted leftovers included",
		Long: `Show the changes a run made relative to the commit it started from: its commits,
then any changes the agent left uncommitted (labelled as such).

Paths after -- limit the diff to those files and directories (relative to
where you are, as in git diff). --name-only lists the changed files, each once,
uncommitted leftovers included.

The run's work is read from branch airlock/<run> in your repository, never by
running git inside the agent's copy, whose configuration the agent controls.
On a terminal the diff keeps git's colour and loses every other escape
sequence the agent's files or messages hold; piped, it is byte for byte.`,
		Example: `  airlock diff fix-auth
  airlock diff fix-auth --name-only
  airlock diff fix-auth -- internal/auth docs/auth.md`,
		Args: func(cmd *cobra.Command, args []string) error {
			if n := runArgs(cmd, args); len(n) > 1 {
				return flagErrorf("%s takes at most one run, got %d (paths go after --)", cmd.CommandPath(), len(n))
			}
			return nil
		},
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.Stat && opts.NameOnly {
				return flagErrorf("give --stat or --name-only, not both")
			}
			refs := runArgs(cmd, args)
			return diffRun(cmd.Context(), f, firstArg(refs), args[len(refs):], opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Stat, "stat", false, "show a diffstat instead of the patch")
	cmd.Flags().BoolVar(&opts.NameOnly, "name-only", false, "list the changed files only")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

// runArgs is the arguments before --.
func runArgs(cmd *cobra.Command, args []string) []string {
	if dash := cmd.ArgsLenAtDash(); dash >= 0 {
		return args[:dash]
	}
	return args
}

func diffRun(ctx context.Context, f *Factory, ref string, paths []string, opts diffOptions) error {
	r, m, err := f.runAndManager(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	dopts := workspace.DiffOptions{
		Stat:     opts.Stat,
		NameOnly: opts.NameOnly,
		Color:    f.IO.StdoutTTY && !opts.NameOnly,
		Paths:    f.repoPaths(r.Project, paths),
	}
	if !f.IO.StdoutTTY {
		// A pipe gets the diff byte for byte: patches must apply.
		return m.Diff(ctx, r, dopts, f.IO.Out)
	}
	// A terminal gets git's colour and nothing else the agent's files,
	// file names or commit messages hold: no escape sequence but SGR.
	w := untrusted.NewSGRWriter(f.IO.Out)
	err = m.Diff(ctx, r, dopts, w)
	if ferr := w.Flush(); err == nil {
		err = ferr
	}
	return err
}

// repoPaths makes paths given relative to the working directory relative to
// the top of repo, where the diff runs, as git does for its own pathspecs.
// Outside repo (and for pathspec magic such as :(top)) they are left as given.
func (f *Factory) repoPaths(repo string, paths []string) []string {
	wd, err := f.Getwd()
	if err != nil {
		return paths
	}
	if real, err := filepath.EvalSymlinks(wd); err == nil {
		wd = real
	}
	rel, err := filepath.Rel(repo, wd)
	if err != nil || rel == ".." || strings.HasPrefix(rel, "../") {
		return paths
	}
	out := make([]string, len(paths))
	for i, p := range paths {
		out[i] = p
		if !strings.HasPrefix(p, ":") && !filepath.IsAbs(p) {
			out[i] = filepath.ToSlash(filepath.Join(rel, p))
		}
	}
	return out
}
