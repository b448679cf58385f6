package cli

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"strings"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/store"
)

type rmOptions struct {
	Yes         bool
	Force       bool
	AllProjects bool
}

func newRmCmd(f *Factory) *cobra.Command {
	var opts rmOptions
	cmd := &cobra.Command{
		Use:     "rm [RUN...]",
		Aliases: []string{"cleanup"},
		Short:   "Remove runs: container, repository copy and branch (logs are kept)",
		Long: `Remove runs: their containers, repository copies and airlock/<run> branches.
The run's record and logs are kept (see ls -a).

rm refuses to drop commits or uncommitted changes that are not merged into any
other branch, tag or remote, and refuses to remove a running agent; --force does
both. On a terminal it asks for confirmation unless -y is given.`,
		RunE: func(cmd *cobra.Command, args []string) error {
			return rmRun(cmd.Context(), f, args, opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.Yes, "yes", "y", false, "do not ask for confirmation")
	cmd.Flags().BoolVar(&opts.Force, "force", false, "remove even unmerged work and running agents")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func rmRun(ctx context.Context, f *Factory, refs []string, opts rmOptions) error {
	if len(refs) == 0 {
		refs = []string{""}
	}
	// Resolve every name before removing anything: a typo changes nothing.
	var runs []*store.Run
	for _, ref := range refs {
		r, err := f.resolveRun(ctx, ref, opts.AllProjects)
		if err != nil {
			return err
		}
		runs = append(runs, r)
	}
	if f.IO.StdinTTY && !opts.Yes {
		ids := make([]string, len(runs))
		for i, r := range runs {
			ids[i] = r.ID
		}
		fmt.Fprintf(f.IO.ErrOut, "Remove %s (container, repository copy, branch)? [y/N] ", strings.Join(ids, ", "))
		answer, _ := bufio.NewReader(f.IO.In).ReadString('\n')
		if a := strings.ToLower(strings.TrimSpace(answer)); a != "y" && a != "yes" {
			return &ExitError{Code: ExitFailure, Message: "nothing removed"}
		}
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	var errs []error
	for _, r := range runs {
		if _, err := m.Remove(ctx, r, opts.Force); err != nil {
			errs = append(errs, err)
			continue
		}
		fmt.Fprintf(f.IO.ErrOut, "Removed %s from %s\n", r.ID, r.Project)
	}
	return errors.Join(errs...)
}
