package cli

import (
	"context"
	"fmt"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/prompt"
	"github.com/airlock-dev/airlock/internal/run"
)

type startOptions struct {
	Message     string
	AllProjects bool
}

func newStartCmd(f *Factory) *cobra.Command {
	var opts startOptions
	cmd := &cobra.Command{
		Use:   "start [RUN]",
		Short: "Bring a stopped persistent run back in its own container",
		Long: `Start a finished persistent run (run or shell with --persistent) again: the same
container, so tools and packages the agent installed are still there, behind a
new egress proxy with the run's egress policy and your current credentials. The
agent continues its conversation. A headless run's agent is given -m, or the
run's prompt again; a shell run's terminal is reached with attach.

When the agent stops, its new work is collected like any run's (diff, merge).
start returns at once; follow the run with logs -f or wait.`,
		Example: `  airlock run setup-tools --persistent
  airlock start setup-tools -m "Run the test suite with the tools you installed"
  airlock shell --persistent ; airlock start ; airlock attach`,
		Args: exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			if cmd.Flags().Changed("message") {
				// The same checks as run -m: text, not empty, at most 1 MiB.
				if _, err := prompt.Inline(opts.Message, ""); err != nil {
					return flagErrorf("%v", err)
				}
			}
			return startRun(cmd.Context(), f, firstArg(args), opts)
		},
	}
	cmd.Flags().StringVarP(&opts.Message, "message", "m", "", "what a headless agent is asked to do next (default: the run's prompt again)")
	addAllProjectsFlag(cmd, &opts.AllProjects)
	return cmd
}

func startRun(ctx context.Context, f *Factory, ref string, opts startOptions) error {
	r, m, err := f.runAndManager(ctx, ref, opts.AllProjects)
	if err != nil {
		return err
	}
	if opts.Message != "" && r.Kind == run.KindShell {
		return flagErrorf("-m is for headless runs; %s is a shell: attach to it and type", r.ID)
	}
	ag, err := agent.Lookup(r.Agent)
	if err != nil {
		return fmt.Errorf("run %s: %w", r.ID, err)
	}
	auth, err := f.agentAuth(ag)
	if err != nil {
		return err
	}
	r, err = m.Restart(ctx, r, auth, opts.Message)
	if err != nil {
		return err
	}
	fmt.Fprintln(f.IO.Out, r.ID)
	if r.Kind == run.KindShell {
		fmt.Fprintf(f.IO.ErrOut, "Started %s again. Attach to it with `airlock attach %s`.\n", r.ID, r.ID)
	} else {
		fmt.Fprintf(f.IO.ErrOut, "Started %s again. Follow it with `airlock logs -f %s`.\n", r.ID, r.ID)
	}
	f.startWatcher(m, r)
	return nil
}
