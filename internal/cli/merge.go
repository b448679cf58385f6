package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/workspace"
)

type mergeOptions struct {
	Squash             bool
	IncludeUncommitted bool
	AllProjects        bool
}

func newMergeCmd(f *Factory) *cobra.Command {
	var opts mergeOptions
	cmd := &cobra.Command{
		Use:   "merge [RUN]",
		Short: "Merge a run's branch into your current branch",
		Long: `Merge the run's branch (airlock/<run>) into your current branch: a fast-forward
when possible, otherwise a merge commit; --squash makes one commit instead.

Changes the agent left uncommitted are not merged unless --include-uncommitted
is given: then they are committed on top of the run's branch first (the commit
"airlock: uncommitted changes left by the agent") and merged with it.

merge refuses, changing nothing, when your work tree has uncommitted changes to
tracked files, when HEAD is detached, or when a merge or rebase is in progress.
On a conflict it aborts cleanly, lists the conflicting files and tells you how
to merge by hand (git merge airlock/<run>).`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			return mergeRun(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Squash, "squash", false, "squash the run's commits into one commit")
	cmd.Flags().BoolVar(&opts.IncludeUncommitted, "include-uncommitted", false, "also merge the changes the agent left uncommitted")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func mergeRun(ctx context.Context, f *Factory, ref string, opts mergeOptions) error {
	r, m, err := f.runAndManager(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	res, r, err := m.Merge(ctx, r, workspace.MergeOptions{Squash: opts.Squash, IncludeUncommitted: opts.IncludeUncommitted})
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "Merged %s into %s of %s (%s).\n", r.ID, res.Into, r.Project, mergeKind(res))
	return nil
}

func mergeKind(res workspace.MergeResult) string {
	kind := "merge commit"
	switch {
	case res.UpToDate:
		kind = "already up to date"
	case res.Squashed:
		kind = "squashed into one commit"
	case res.FastForward:
		kind = "fast-forward"
	}
	if res.IncludedUncommitted {
		kind += ", with the agent's uncommitted changes"
	}
	return kind
}
