package cli

import (
	"context"

	"github.com/spf13/cobra"
)

type diffOptions struct {
	Stat bool
}

func newDiffCmd(f *Factory) *cobra.Command {
	var opts diffOptions
	cmd := &cobra.Command{
		Use:   "diff [RUN]",
		Short: "Show what a run changed, uncommitted leftovers included",
		Long: `Show the changes a run made relative to the commit it started from: its commits,
then any changes the agent left uncommitted (labelled as such).

The run's work is read from branch airlock/<run> in your repository, never by
running git inside the agent's copy, whose configuration the agent controls.`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			return diffRun(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.Stat, "stat", false, "show a diffstat instead of the patch")
	return cmd
}

func diffRun(ctx context.Context, f *Factory, ref string, opts diffOptions) error {
	r, m, err := f.runAndManager(ctx, ref)
	if err != nil {
		return err
	}
	return m.Diff(ctx, r, opts.Stat, f.IO.StdoutTTY, f.IO.Out)
}
