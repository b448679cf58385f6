package cli

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"golang.org/x/term"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/credentials"
	"github.com/airlock-dev/airlock/internal/provider"
)

func newCredentialsCmd(f *Factory) *cobra.Command {
	cmd := &cobra.Command{
		Use:   "credentials",
		Short: "Store the agent's model-API credentials; list injected ones",
		Long: `Store the agent's credentials in $XDG_CONFIG_HOME/airlock/credentials (mode 0600).

The environment wins over the file. Supported names (of every agent): ` + strings.Join(agent.AllCredentialNames(), ", ") + `.
Values are read from standard input (without echo on a terminal), never from
the command line, where other users could see them.

With CLAUDE_CODE_USE_BEDROCK or CLAUDE_CODE_USE_VERTEX set, ` + "`ls`" + ` also shows
the Bedrock or Vertex credentials found on this machine (region, profile or
project, where from, identity, expiry), fetching them once; they stay on the
host, where the egress proxy signs with them.

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
	lookup := envThenFile(f.LookupEnv, file)
	if p := provider.Selected(lookup); p != "" {
		d, err := checkProvider(ctx, p, lookup)
		if err != nil {
			fmt.Fprintf(f.IO.Out, "%s\t%s\t(%s)\n", provider.Title(p), providerPlace(d), err)
		} else {
			fmt.Fprintf(f.IO.Out, "%s\t%s\t%s\t%s\n", provider.Title(p), providerPlace(d), providerFrom(d), expiryText(d.Expires, f.Now()))
		}
	}
	return listInjections(ctx, f)
}

// envThenFile looks a name up in the environment, then in airlock's
// credentials file: the environment wins, as for every credential.
func envThenFile(env func(string) (string, bool), file map[string]string) func(string) (string, bool) {
	return func(name string) (string, bool) {
		if v, ok := env(name); ok && v != "" {
			return v, true
		}
		v, ok := file[name]
		return v, ok
	}
}

// providerFetchTimeout bounds fetching a provider's credentials once (an
// SSO or STS exchange) for ls and doctor.
const providerFetchTimeout = 30 * time.Second

// checkProvider resolves the selected provider's credentials on this
// machine and fetches them once, as a run would: the description of
// what was found, and why it is not usable if it is not.
func checkProvider(ctx context.Context, p string, lookup func(string) (string, bool)) (provider.Description, error) {
	s, err := provider.Resolve(p, lookup)
	if err != nil {
		return provider.Description{Provider: p}, err
	}
	ctx, cancel := context.WithTimeout(ctx, providerFetchTimeout)
	defer cancel()
	src, err := provider.Open(ctx, s, lookup)
	if err != nil {
		return provider.Description{Provider: p, Region: s.Region, Project: s.Project, Profile: s.Profile}, err
	}
	_, err = src.Credentials(ctx)
	return src.Describe(), err
}

// providerPlace is what selects the credentials: region, project, profile.
func providerPlace(d provider.Description) string {
	var parts []string
	if d.Region != "" {
		parts = append(parts, "region "+d.Region)
	}
	if d.Project != "" {
		parts = append(parts, "project "+d.Project)
	}
	if d.Profile != "" {
		parts = append(parts, "profile "+d.Profile)
	}
	return strings.Join(parts, ", ")
}

// providerFrom says where the credentials come from and whose they are.
func providerFrom(d provider.Description) string {
	if d.Identity == "" || strings.Contains(d.From, d.Identity) {
		return d.From
	}
	return d.From + ", " + d.Identity
}

// expiryText is "expires in 42m", "expired" or "does not expire".
func expiryText(exp, now time.Time) string {
	if exp.IsZero() {
		return "does not expire"
	}
	d := exp.Sub(now)
	switch {
	case d <= 0:
		return "expired"
	case d < time.Minute:
		return fmt.Sprintf("expires in %ds", int(d.Seconds()))
	case d < time.Hour:
		return fmt.Sprintf("expires in %dm", int(d.Minutes()))
	case d < 48*time.Hour:
		return fmt.Sprintf("expires in %dh%02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("expires in %dd", int(d.Hours())/24)
}
