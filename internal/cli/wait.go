package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/store"
)

func newWaitCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "wait [RUN]",
		Short: "Wait for a run to finish; exit status 0 only if the agent succeeded",
		Long: `Block until the run's agent has finished, bring its work into your repository
as branch airlock/<run>, and print the outcome.

Exit status: 0 if the agent succeeded, 3 if it failed or was stopped, 1 on error.`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			return waitRun(cmd.Context(), f, firstArg(args))
		},
	}
}

func waitRun(ctx context.Context, f *Factory, ref string) error {
	r, m, err := f.runAndManager(ctx, ref)
	if err != nil {
		return err
	}
	r, err = m.Wait(ctx, r)
	if err != nil {
		return err
	}
	return outcome(f, r)
}

// outcome prints a finished run's result and turns failure into exit status 3.
func outcome(f *Factory, r *store.Run) error {
	fmt.Fprintf(f.IO.ErrOut, "Run %s %s", r.ID, r.Status)
	if r.Error != "" {
		fmt.Fprintf(f.IO.ErrOut, ": %s", r.Error)
	}
	fmt.Fprintln(f.IO.ErrOut)
	fmt.Fprint(f.IO.ErrOut, nextSteps(r))
	switch r.Status {
	case store.StatusSucceeded, store.StatusMerged:
		return nil
	}
	return &ExitError{Code: ExitRunFail}
}
