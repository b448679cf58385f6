package cli

import (
	"context"
	"fmt"
	"strings"

	"github.com/spf13/pflag"

	"github.com/airlock-dev/airlock/internal/config"
)

// gitAuthDefault is the host --git-auth means without a value.
const gitAuthDefault = "github.com"

func addGitAuthFlag(fl *pflag.FlagSet, v *string) {
	fl.StringVar(v, "git-auth", "", "let the agent fetch from and push to this git host over HTTPS (--git-auth alone: "+gitAuthDefault+") with your token, injected by the proxy; the sandbox never holds it")
	fl.Lookup("git-auth").NoOptDefVal = gitAuthDefault
}

// applyGitAuth turns egress.git_auth into an allow rule for the host and
// an injection of the user's token as HTTP basic authentication
// (x-access-token:TOKEN, which GitHub, Gitea and GitLab accept for
// tokens) on every request to it. The proxy puts it on each request, so
// git in the sandbox needs no credential helper and holds nothing.
func (f *Factory) applyGitAuth(res *config.Resolved) error {
	host := res.Config.Egress.GitAuth
	if host == "" {
		return nil
	}
	from := res.From("egress.git_auth")
	if err := res.Set("egress.allow", host, from); err != nil {
		return err
	}
	name, _, _ := strings.Cut(host, ":")
	res.Config.Egress.Inject = append(res.Config.Egress.Inject, config.Inject{
		Host: host, Basic: "x-access-token:{}", From: f.gitHubTokenSource(name), Source: from,
	})
	return nil
}

// gitHubTokenSource is where the user's token for a git host comes from
// (a credentials source): GH_TOKEN, else GITHUB_TOKEN, else `gh auth
// token` for the host. host must be a validated host name: it goes into a
// shell command.
func (f *Factory) gitHubTokenSource(host string) string {
	for _, env := range []string{"GH_TOKEN", "GITHUB_TOKEN"} {
		if v, ok := f.LookupEnv(env); ok && v != "" {
			return "env:" + env
		}
	}
	return "cmd:gh auth token --hostname " + host
}

// gitHubToken reads the user's token for host on the host, and says where
// it came from. It is for the host's own requests (airlock pr): it never
// goes into a sandbox.
func (f *Factory) gitHubToken(ctx context.Context, host string) (token, source string, err error) {
	source = f.gitHubTokenSource(host)
	token, err = f.resolveSecret(ctx, source)
	if err != nil && strings.HasPrefix(source, "env:") {
		return "", source, fmt.Errorf("the GitHub token in %s: %w", strings.TrimPrefix(source, "env:"), err)
	}
	if err != nil {
		return "", source, fmt.Errorf("no GitHub token for %s: GH_TOKEN and GITHUB_TOKEN are not set, and `gh auth token --hostname %s` gave none (%v); export GH_TOKEN, or sign in with gh auth login",
			host, host, strings.Join(strings.Fields(err.Error()), " "))
	}
	return token, source, nil
}
