package cli

import (
	"context"
	"fmt"
	"text/tabwriter"

	"github.com/spf13/cobra"
)

func newConfigCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "config",
		Short: "Inspect the configuration",
	}
	var asJSON bool
	show := &cobra.Command{
		Use:   "show",
		Short: "Show the resolved configuration and where each value came from",
		Long: `Show every setting's resolved value and its source: the built-in default,
/etc/airlock/config.toml, $XDG_CONFIG_HOME/airlock/config.toml, or the
project's .airlock/config.toml (with the line that set it).`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return configShowRun(cmd.Context(), f, asJSON)
		},
	}
	show.Flags().BoolVar(&asJSON, "json", false, "print JSON")
	cmd.AddCommand(show)
	return cmd
}

func configShowRun(ctx context.Context, f *Factory, asJSON bool) error {
	project, _ := f.project(ctx)
	res, err := f.loadConfig(project)
	if err != nil {
		return err
	}
	sources := res.Sources()
	if asJSON {
		type entry struct {
			Key    string `json:"key"`
			Value  string `json:"value"`
			Source string `json:"source"`
		}
		out := make([]entry, len(sources))
		for i, s := range sources {
			out[i] = entry{s.Key, s.Value, s.From}
		}
		return writeJSON(f.IO.Out, out)
	}
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "KEY\tVALUE\tSOURCE")
	for _, s := range sources {
		v := s.Value
		if v == "" {
			v = `""`
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", s.Key, v, s.From)
	}
	return tw.Flush()
}
