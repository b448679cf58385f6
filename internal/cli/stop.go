package cli

import (
	"context"
	"fmt"
	"time"

	"github.com/spf13/cobra"
)

type stopOptions struct {
	Timeout time.Duration
}

func newStopCmd(f *Factory) *cobra.Command {
	var opts stopOptions
	cmd := &cobra.Command{
		Use:   "stop [RUN]",
		Short: "Stop a running agent, keeping its work",
		Args:  exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			return stopRun(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 10*time.Second, "time to let the agent exit before killing it")
	return cmd
}

func stopRun(ctx context.Context, f *Factory, ref string, opts stopOptions) error {
	r, err := f.resolveRun(ctx, ref)
	if err != nil {
		return err
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	if r.Status.Finished() {
		fmt.Fprintf(f.IO.ErrOut, "Run %s has already finished (%s).\n", r.ID, r.Status)
		return nil
	}
	r, err = m.Stop(ctx, r, opts.Timeout)
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "Stopped %s.\n", r.ID)
	fmt.Fprint(f.IO.ErrOut, nextSteps(r))
	return nil
}
