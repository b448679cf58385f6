package cli

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/store"
	"github.com/airlock-dev/airlock/internal/untrusted"
)

type lsOptions struct {
	All         bool
	AllProjects bool
	JSON        bool
}

func newLsCmd(f *Factory) *cobra.Command {
	var opts lsOptions
	cmd := &cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List this project's runs",
		Long: `List this project's runs, newest first: ID, name, status, branch, age and cost.

Statuses: creating, running, succeeded, failed, stopped, merged. Removed runs
(whose logs are kept) are shown with -a. --json prints the schema documented
in docs/runs-json.md.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return lsRun(cmd.Context(), f, opts)
		},
	}
	cmd.Flags().BoolVarP(&opts.All, "all", "a", false, "include removed runs")
	cmd.Flags().BoolVar(&opts.AllProjects, "all-projects", false, "list the runs of every project")
	cmd.Flags().BoolVar(&opts.JSON, "json", false, "print JSON")
	return cmd
}

func lsRun(ctx context.Context, f *Factory, opts lsOptions) error {
	st, err := f.Store()
	if err != nil {
		return err
	}
	project := ""
	if !opts.AllProjects {
		if project, err = f.project(ctx); err != nil {
			return err
		}
	}
	runs, err := st.List()
	if err != nil {
		return err
	}
	m, err := f.manager()
	if err != nil {
		return err
	}
	var shown []*store.Run
	warned := false
	for _, r := range runs {
		if project != "" && r.Project != project {
			continue
		}
		if r.Removed() && !opts.All {
			continue
		}
		if !r.Status.Finished() {
			if cur, err := m.Reconcile(ctx, r); err == nil {
				r = cur
			} else if !warned {
				fmt.Fprintf(f.IO.ErrOut, "warning: statuses may be stale: %v\n", err)
				warned = true
			}
		}
		shown = append(shown, r)
	}
	if opts.JSON {
		return writeJSON(f.IO.Out, jsonCosts(shown))
	}
	if len(shown) == 0 {
		if f.IO.StdoutTTY {
			fmt.Fprintln(f.IO.ErrOut, "No runs. Start one with `airlock run TASK`.")
		}
		return nil
	}
	now := f.Now()
	if !f.IO.StdoutTTY {
		for _, r := range shown {
			// The agent is last: scripts that read the first six
			// fields keep working.
			fmt.Fprintf(f.IO.Out, "%s\t%s\t%s\t%s\t%s\t%.4f\t%s\n", r.ID, r.Name, statusText(r), r.Branch,
				r.CreatedAt.UTC().Format("2006-01-02T15:04:05Z"), r.CostUSD, agentName(r))
		}
		return nil
	}
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	header := "ID\tNAME\tSTATUS\tAGENT\tBRANCH\tAGE\tCOST"
	if opts.AllProjects {
		header += "\tPROJECT"
	}
	ports := anyPorts(shown)
	if ports {
		header += "\tPORTS"
	}
	fmt.Fprintln(tw, header)
	for _, r := range shown {
		line := fmt.Sprintf("%s\t%s\t%s\t%s\t%s\t%s\t%s", r.ID, r.Name, statusText(r), agentName(r), r.Branch, age(now.Sub(r.CreatedAt)), cost(r.CostUSD))
		if opts.AllProjects {
			line += "\t" + r.Project
		}
		if ports {
			line += "\t" + openPorts(r)
		}
		fmt.Fprintln(tw, line)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	_, err = fmt.Fprintln(f.IO.Out, totalCost(shown))
	return err
}

// jsonCosts returns runs with their costs rounded to 10 significant digits,
// far below a cent and free of float noise (0.00014000000000000001). The
// records themselves are not changed.
func jsonCosts(runs []*store.Run) []*store.Run {
	out := make([]*store.Run, len(runs))
	for i, r := range runs {
		c := *r
		c.CostUSD = roundSig(r.CostUSD, 10)
		out[i] = &c
	}
	return out
}

func writeJSON(w io.Writer, v any) error {
	if runs, ok := v.([]*store.Run); ok && runs == nil {
		v = []*store.Run{}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// agentName is the run's agent; records from before there was a choice
// name none and ran Claude Code.
func agentName(r *store.Run) string {
	if r.Agent == "" {
		return "claude"
	}
	return untrusted.Text(r.Agent)
}
