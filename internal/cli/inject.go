package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/airlock-dev/airlock/internal/agent"
	"github.com/airlock-dev/airlock/internal/config"
	"github.com/airlock-dev/airlock/internal/credentials"
	"github.com/airlock-dev/airlock/internal/egress"
	"github.com/airlock-dev/airlock/internal/run"
)

// secretSources resolves injection sources on this host.
func (f *Factory) secretSources() credentials.Sources {
	s := credentials.HostSources()
	s.LookupEnv = f.LookupEnv
	return s
}

// resolveSecret is run.ResolveFunc on this host.
func (f *Factory) resolveSecret(ctx context.Context, source string) (string, error) {
	return f.secretSources().Resolve(ctx, source)
}

// runInjections resolves the configured [[egress.inject]] entries on the
// host, each with a fresh placeholder. Any source that fails is an error
// naming the entry's file and line, before anything is made.
func (f *Factory) runInjections(ctx context.Context, entries []config.Inject, env []string) ([]run.Injection, error) {
	var out []run.Injection
	owner := map[string]string{}
	for _, e := range env {
		name, _, _ := strings.Cut(e, "=")
		owner[name] = "the sandbox's env"
	}
	reserved := append(append([]string{"HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "NO_PROXY", "no_proxy",
		"HOME", "PATH"}, run.CAEnv()...), agent.AllCredentialNames()...)
	for _, a := range agent.All() {
		for _, kv := range a.Env(agent.Options{}) {
			name, _, _ := strings.Cut(kv, "=")
			reserved = append(reserved, name)
		}
	}
	for _, in := range entries {
		if pe := in.PlaceholderEnv; pe != "" {
			for _, r := range reserved {
				if strings.EqualFold(pe, r) {
					return nil, fmt.Errorf("%s: egress.inject: placeholder_env %s is a variable airlock sets itself", in.Source, pe)
				}
			}
			if o, ok := owner[pe]; ok {
				return nil, fmt.Errorf("%s: egress.inject: placeholder_env %s is also set by %s", in.Source, pe, o)
			}
			owner[pe] = in.Source
		}
		v, err := f.resolveSecret(ctx, in.From)
		if err != nil && strings.HasPrefix(in.From, "cmd:gh auth token") {
			err = fmt.Errorf("%w\n(git_auth takes your token from GH_TOKEN, GITHUB_TOKEN or `gh auth token`)", err)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: egress.inject for %s: %w", in.Source, in.Host, err)
		}
		out = append(out, run.Injection{Inject: in, Placeholder: run.NewPlaceholder(), Secret: v})
	}
	return out, nil
}

// listInjections prints the project's [[egress.inject]] entries: the host,
// what is set, the value masked (each source resolved now, as a run would)
// and where it comes from. A source that fails shows its error instead.
func listInjections(ctx context.Context, f *Factory) error {
	project, _ := f.project(ctx)
	res, err := f.loadConfig(project)
	if err != nil {
		return err
	}
	if err := f.applyGitAuth(res); err != nil {
		return err
	}
	for _, in := range res.Config.Egress.Inject {
		masked := ""
		v, err := f.resolveSecret(ctx, in.From)
		if err != nil {
			masked = "(" + strings.Join(strings.Fields(err.Error()), " ") + ")"
		} else {
			masked = credentials.Mask(v)
		}
		fmt.Fprintf(f.IO.Out, "inject %s (%s)\t%s\t%s (%s)\n", in.Host, in.Where(), masked, in.From, in.Source)
	}
	return nil
}

// describeInjections adds the injected credentials to the policy shown
// before a run: which host gets what, from where (never the value).
func describeInjections(list []run.Injection) string {
	var b strings.Builder
	for _, in := range list {
		fmt.Fprintf(&b, "  inject %-32s %s from %s (%s)\n", in.Host, in.Where(), in.From, in.Source)
	}
	return b.String()
}

// injectionsAllowed refuses an injection for a host the policy does not
// let the agent reach: it would never be used, which is surely not what
// was meant.
func injectionsAllowed(p egress.Policy, list []config.Inject) error {
	for _, in := range list {
		r, err := egress.ParseRule(in.Host, in.Source)
		if err != nil {
			return err
		}
		host := strings.TrimPrefix(r.Pattern, "*.")
		port := 443
		if len(r.Ports) > 0 {
			port = r.Ports[0]
		}
		if d := p.Decide(host, port); !d.Allowed {
			return fmt.Errorf("%s: egress.inject: %s has a credential, but the egress policy does not let the agent reach it (%s): add it to [egress] allow or pass --allow %s",
				in.Source, in.Host, d.Reason, in.Host)
		}
	}
	return nil
}
