package cli

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/run"
	"github.com/airlock-dev/airlock/internal/store"
)

type stopOptions struct {
	Timeout time.Duration
	All     bool
	// Kill stops at once, without the grace period.
	Kill bool

	AllProjects bool
}

func newStopCmd(f *Factory) *cobra.Command {
	var opts stopOptions
	cmd := &cobra.Command{
		Use:   "stop [RUN | --all]",
		Short: "Stop a running agent gracefully, keeping its work",
		Long: `Stop a running agent: it gets SIGTERM, and SIGKILL if it has not exited after
--timeout. Its work so far is collected as for any finished run (diff, merge).
A persistent run's container is kept: start brings it back.

--all stops every running agent of this project.`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.All && len(args) > 0 {
				return flagErrorf("give a run or --all, not both")
			}
			if opts.Timeout < 0 {
				return flagErrorf("--timeout must not be negative, got %s", opts.Timeout)
			}
			return stopRun(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().DurationVar(&opts.Timeout, "timeout", 10*time.Second, "time to let the agent exit before killing it")
	cmd.Flags().BoolVar(&opts.All, "all", false, "stop every running agent of this project")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func newKillCmd(f *Factory) *cobra.Command {
	opts := stopOptions{Kill: true}
	cmd := &cobra.Command{
		Use:   "kill [RUN | --all]",
		Short: "Stop a running agent at once (SIGKILL), keeping its work",
		Long: `Kill a running agent immediately, without the grace period of stop. Its work
so far is collected as for any finished run (diff, merge); uncommitted changes
are kept as the agent left them.

--all kills every running agent of this project.`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			if opts.All && len(args) > 0 {
				return flagErrorf("give a run or --all, not both")
			}
			return stopRun(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().BoolVar(&opts.All, "all", false, "kill every running agent of this project")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func stopRun(ctx context.Context, f *Factory, ref string, opts stopOptions) error {
	verb := "Stopped"
	if opts.Kill {
		verb = "Killed"
	}
	if opts.All {
		return stopAll(ctx, f, verb, opts)
	}
	r, m, err := f.runAndManager(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	if r, err = m.Reconcile(ctx, r); err != nil {
		return err
	}
	if r.Status.Finished() || r.Removed() {
		fmt.Fprintf(f.IO.ErrOut, "Run %s has already finished (%s).\n", r.ID, statusText(r))
		return nil
	}
	if r, err = stopOne(ctx, m, r, opts); err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "%s %s.\n", verb, r.ID)
	fmt.Fprint(f.IO.ErrOut, nextSteps(r))
	return nil
}

// stopAll stops the project's running agents all at once: each stop waits
// for its agent and collects its work, so one at a time would add up.
func stopAll(ctx context.Context, f *Factory, verb string, opts stopOptions) error {
	project, err := f.project(ctx)
	if err != nil {
		return err
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	if err := m.Engine.Ping(ctx); err != nil {
		return err
	}
	active, err := m.Active(ctx, project)
	if err != nil {
		return err
	}
	if len(active) == 0 {
		fmt.Fprintln(f.IO.ErrOut, "No running agents in this project.")
		return nil
	}
	type result struct {
		r   *store.Run
		err error
	}
	results := make(chan result, len(active))
	for _, r := range active {
		go func() {
			cur, err := stopOne(ctx, m, r, opts)
			if cur == nil {
				cur = r
			}
			results <- result{cur, err}
		}()
	}
	var errs []error
	for range active {
		res := <-results
		if res.err != nil {
			errs = append(errs, res.err)
			continue
		}
		if res.r.Head != "" {
			fmt.Fprintf(f.IO.ErrOut, "%s %s; its work is on branch %s in %s.\n", verb, res.r.ID, res.r.Branch, res.r.Project)
		} else {
			fmt.Fprintf(f.IO.ErrOut, "%s %s.\n", verb, res.r.ID)
		}
	}
	return errors.Join(errs...)
}

func stopOne(ctx context.Context, m *run.Manager, r *store.Run, opts stopOptions) (*store.Run, error) {
	if opts.Kill {
		return m.Kill(ctx, r)
	}
	return m.Stop(ctx, r, opts.Timeout)
}
