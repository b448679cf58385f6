package cli

import (
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
	source := "cmd:gh auth token --hostname " + name
	for _, env := range []string{"GH_TOKEN", "GITHUB_TOKEN"} {
		if v, ok := f.LookupEnv(env); ok && v != "" {
			source = "env:" + env
			break
		}
	}
	res.Config.Egress.Inject = append(res.Config.Egress.Inject, config.Inject{
		Host: host, Basic: "x-access-token:{}", From: source, Source: from,
	})
	return nil
}
