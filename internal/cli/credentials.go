package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/credentials"
)

func newCredentialsCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "credentials",
		Short: "Store the agent's model-API credentials; list injected ones",
		Long: `Store the agent's credentials in $XDG_CONFIG_HOME/airlock/credentials (mode 0600).

The environment wins over the file. Supported names (of every agent): ` + strings.Join(agent.AllCredentialNames(), ", ") + `.
Values are read from standard input (without echo on a terminal), never from
the command line, where other users could see them.

` + "`ls`" + ` also lists the credentials the egress proxy injects for hosts
([[egress.inject]] in the config), resolving each source on this machine and
showing its value masked.`,
	}
	cmd.AddCommand(&cobra.Command{
		Use:   "set [NAME]",
		Short: "Store a credential read from standard input (default ANTHROPIC_API_KEY)",
		Args:  exactlyOneOrNone,
		RunE: func(cmd *cobra.Command, args []string) error {
			name := firstArg(args)
			if name == "" {
				name = "ANTHROPIC_API_KEY"
			}
			return credentialsSet(f, name)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:     "ls",
		Aliases: []string{"list"},
		Short:   "Show which credentials are set and where from (masked)",
		Args:    cobra.NoArgs,
		RunE: func(cmd *cobra.Command, args []string) error {
			return credentialsList(cmd.Context(), f)
		},
	})
	cmd.AddCommand(&cobra.Command{
		Use:   "rm NAME",
		Short: "Remove a stored credential",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			path, err := credentials.DefaultPath(f.Getenv)
			if err != nil {
				return err
			}
			return credentials.Unset(path, args[0])
		},
	})
	return cmd
}

func credentialsSet(f *Factory, name string) error {
	names := agent.AllCredentialNames()
	if !slices.Contains(names, name) {
		return flagErrorf("unknown credential %q: use one of %s", name, strings.Join(names, ", "))
	}
	path, err := credentials.DefaultPath(f.Getenv)
	if err != nil {
		return err
	}
	var value string
	if file, ok := f.IO.In.(*os.File); ok && f.IO.StdinTTY {
		fmt.Fprintf(f.IO.ErrOut, "%s: ", name)
		b, err := term.ReadPassword(int(file.Fd()))
		fmt.Fprintln(f.IO.ErrOut)
		if err != nil {
			return fmt.Errorf("read %s: %w", name, err)
		}
		value = string(b)
	} else {
		line, err := bufio.NewReader(f.IO.In).ReadString('\n')
		if err != nil && line == "" {
			return fmt.Errorf("read %s from standard input: nothing was given (pipe the value in)", name)
		}
		value = line
	}
	value = strings.TrimSpace(value)
	if err := credentials.Set(path, name, value); err != nil {
		return err
	}
	fmt.Fprintf(f.IO.ErrOut, "Stored %s in %s\n", name, path)
	return nil
}

func credentialsList(ctx context.Context, f *Factory) error {
	path, err := credentials.DefaultPath(f.Getenv)
	if err != nil {
		return err
	}
	file, err := credentials.Load(path)
	if err != nil {
		return err
	}
	found := credentials.Resolve(agent.AllCredentialNames(), f.LookupEnv, file, path)
	if len(found) == 0 {
		fmt.Fprintln(f.IO.ErrOut, "No credentials set. Set one with `airlock credentials set NAME` or export it (ANTHROPIC_API_KEY for Claude Code).")
	}
	for _, s := range found {
		fmt.Fprintf(f.IO.Out, "%s\t%s\t%s\n", s.Name, credentials.Mask(s.Value), s.From)
	}
	return listInjections(ctx, f)
}
