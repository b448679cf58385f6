package cli

import (
	"context"
	"fmt"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/airlock-dev/airlock/internal/config"
)

func newProfileCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "profile",
		Short: "List and show agent profiles (--profile NAME on run and shell)",
		Long: `A profile is a named set of settings a run asks for with --profile NAME: the
agent and model, env, allow and deny, mounts, caches, setup commands, a
preamble put before the prompt, and the agent's own configuration to bring in
from your home (bring = ["instructions", "commands", "agents", "mcp"]: Claude
Code's ~/.claude/CLAUDE.md, ~/.claude/commands, ~/.claude/agents and the MCP
servers of ~/.claude.json, copied into the run's home, never mounted).

Define one as [profiles.NAME] in any config file, or as
.airlock/profiles/NAME.toml in the repository (its keys at the top level). A
profile applies over the config files and under the prompt's frontmatter and
the flags. A repository's profiles may set only what its config may, and may
not bring your own agent configuration.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "List the profiles and where each is defined",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return profileLs(cmd.Context(), f)
		},
	}, &cobra.Command{
		Use:   "show NAME",
		Short: "Show what a profile sets",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return profileShow(cmd.Context(), f, args[0])
		},
	})
	return cmd
}

func (f *Factory) profiles(ctx context.Context) (*config.Resolved, error) {
	project, _ := f.project(ctx) // outside a repository: the user's profiles
	return f.loadConfig(project)
}

func profileLs(ctx context.Context, f *Factory) error {
	res, err := f.profiles(ctx)
	if err != nil {
		return err
	}
	ps := res.Profiles()
	if len(ps) == 0 {
		fmt.Fprintln(f.IO.ErrOut, "No profiles. Define one as [profiles.NAME] in a config file or in .airlock/profiles/NAME.toml.")
		return nil
	}
	tw := tabwriter.NewWriter(f.IO.Out, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tSETS\tDEFINED IN")
	for _, p := range ps {
		var keys []string
		for _, s := range p.Settings() {
			k, _, _ := strings.Cut(s, " = ")
			keys = append(keys, k)
		}
		if p.Preamble != "" {
			keys = append(keys, "preamble")
		}
		if len(p.Bring) > 0 {
			keys = append(keys, "bring")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", p.Name, strings.Join(keys, ", "), p.Source)
	}
	return tw.Flush()
}

func profileShow(ctx context.Context, f *Factory, name string) error {
	res, err := f.profiles(ctx)
	if err != nil {
		return err
	}
	p, err := res.ApplyProfile(name, "profile show")
	if err != nil {
		return err
	}
	fmt.Fprintf(f.IO.Out, "# profile %s, from %s\n", p.Name, p.Source)
	for _, s := range p.Settings() {
		fmt.Fprintln(f.IO.Out, s)
	}
	if len(p.Bring) > 0 {
		fmt.Fprintf(f.IO.Out, "bring = [%s]\n", `"`+strings.Join(p.Bring, `", "`)+`"`)
	}
	if p.Preamble != "" {
		fmt.Fprintf(f.IO.Out, "preamble = %q\n", p.Preamble)
	}
	return nil
}
