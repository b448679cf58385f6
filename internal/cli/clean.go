package cli

import (
	"context"
	"fmt"

	"github.com/airlock-dev/airlock/internal/untrusted"
	"github.com/spf13/cobra"
)

func newCleanCmd(f *Factory) *cobra.Command {
	return &cobra.Command{
		Use:   "clean",
		Short: "Remove stopped containers, orphaned proxies and unused networks; record interrupted runs",
		Long: `Bring every run's record up to date (runs whose creation was interrupted are
recorded as failed; finished runs have their work collected), then remove what
no run needs any more: the stopped containers of finished runs that are not
persistent, leftover harvest containers, egress proxies of finished or unknown
runs, containers of removed or unknown runs, and airlock's own egress networks
(label airlock.role=egress) that no container uses. On Kubernetes, what remains
of a sandbox's pods deleted behind airlock's back (their Secret and
NetworkPolicies) goes by the same rules as the pods would.

clean never removes a run's repository copy, branch or commits (use rm for
that), a running container, a persistent run's container (start brings it
back), a network airlock did not create, or an object on the cluster that
airlock did not label as one of its sandbox's (nor the namespace's
airlock-deny-all policy).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return cleanRun(cmd.Context(), f)
		},
	}
}

func cleanRun(ctx context.Context, f *Factory) error {
	m, err := f.manager()
	if err != nil {
		return err
	}
	done, err := m.Clean(ctx)
	for _, r := range done.Failed {
		fmt.Fprintf(f.IO.ErrOut, "Recorded %s as failed: %s\n", r.ID, untrusted.Text(r.Error))
	}
	for _, c := range done.Containers {
		fmt.Fprintf(f.IO.ErrOut, "Removed container %s\n", c)
	}
	for _, n := range done.Networks {
		fmt.Fprintf(f.IO.ErrOut, "Removed unused network %s\n", n)
	}
	for _, o := range done.Remnants {
		fmt.Fprintf(f.IO.ErrOut, "Removed %s (its pod is gone)\n", o)
	}
	for _, p := range done.Warm {
		fmt.Fprintf(f.IO.ErrOut, "Removed warm pod %s (the next run makes the pool again)\n", p)
	}
	if err == nil && len(done.Failed)+len(done.Containers)+len(done.Networks)+len(done.Remnants)+len(done.Warm) == 0 {
		fmt.Fprintln(f.IO.ErrOut, "Nothing to clean.")
	}
	return err
}
